"""Live previews: the fitted latent-to-RGB map and the step hook that sends them."""

import numpy as np
import pytest
import torch

from flowmotion import FlowMotionConfig, FlowMotionError, load_pipeline
from flowmotion.model import model_for
from flowmotion.preview import LatentRGB, latent_rgb_for, preview_frames, preview_hook
from flowmotion.preview_fit import clip_tensor, fit_clips, fit_latent_rgb, pooled_rgb, preview_error
from flowmotion.request import TransferRequest
from flowmotion.tiny import build_tiny_ti2v_pipeline
from flowmotion.toy.data import BACKGROUNDS
from flowmotion.transfer import run_transfer

from .helpers import moving_square, seeded

# Measured on the shipped fit: 0.104 on eight held-out clips (flowmotion.preview_fit prints it).
HELD_OUT_ERROR_BOUND = 0.13
# Measured: a flat background's preview is within 0.11 of its decoded colour, channel mean.
FLAT_COLOUR_BOUND = 0.13


@pytest.fixture(scope="module")
def embedded():
    return load_pipeline("embedded", device="cpu")


def flat_clip(colour) -> np.ndarray:
    return np.broadcast_to(np.array(colour, np.uint8), (17, 32, 32, 3)).copy()


def test_preview_frames_are_small_uint8_frames_per_latent_frame():
    factors = LatentRGB(np.zeros((16, 3), np.float32), np.array([0.0, 0.5, 1.0], np.float32))
    frames = preview_frames(torch.randn(1, 16, 3, 4, 6), factors, scale=2)
    assert frames.dtype == np.uint8 and frames.shape == (3, 8, 12, 3)
    assert (frames[..., 0] == 0).all() and (frames[..., 1] == 128).all() and (frames[..., 2] == 255).all()
    with pytest.raises(FlowMotionError, match=r"needs a latent \(1, 16,"):
        preview_frames(torch.randn(1, 48, 3, 4, 6), factors)


@pytest.mark.slow
def test_a_flat_colour_previews_near_its_decoded_colour(embedded):
    factors = latent_rgb_for(embedded)
    model = model_for(embedded)
    decoded, previewed = [], []
    for colour in BACKGROUNDS.values():
        latent = model.encode_video(clip_tensor(flat_clip(colour)))
        decoded.append(pooled_rgb(model.decode(latent), tuple(latent.shape), 2).reshape(-1, 3).mean(0).numpy())
        previewed.append(preview_frames(latent, factors).reshape(-1, 3).mean(0) / 255)
    for index, preview in enumerate(previewed):
        assert np.abs(preview - decoded[index]).mean() < FLAT_COLOUR_BOUND
        distances = [np.linalg.norm(preview - colour) for colour in decoded]
        assert int(np.argmin(distances)) == index, "a preview is nearer another background's colour"


@pytest.mark.slow
def test_the_shipped_fit_holds_on_held_out_clips(embedded):
    assert preview_error(embedded, latent_rgb_for(embedded), fit_clips(8, 99)) < HELD_OUT_ERROR_BOUND


def test_the_shipped_fit_is_found_wherever_the_model_is_installed(tmp_path, embedded):
    import shutil

    from flowmotion.loading import EMBEDDED_FOLDER

    shutil.copytree(EMBEDDED_FOLDER, tmp_path / "elsewhere")
    moved = load_pipeline(str(tmp_path / "elsewhere"))
    assert latent_rgb_for(moved).name == latent_rgb_for(embedded).name == "embedded"


def test_a_model_without_a_fit_is_told_how_to_fit_one(tiny_pipe):
    with pytest.raises(FlowMotionError, match="python -m flowmotion.preview_fit"):
        latent_rgb_for(tiny_pipe)


def test_the_fit_takes_any_pipeline_and_beats_a_constant(tiny_pipe):
    ti2v = build_tiny_ti2v_pipeline()
    for pipe, channels in ((tiny_pipe, 16), (ti2v, 48)):
        clips = fit_clips(3, 5)
        factors = fit_latent_rgb(pipe, clips)
        assert factors.weights.shape == (channels, 3)
        constant = LatentRGB(np.zeros((channels, 3), np.float32), factors.bias)
        assert preview_error(pipe, factors, clips) < preview_error(pipe, constant, clips)


@pytest.mark.slow
def test_the_preview_hook_sends_every_few_steps_and_the_last(embedded):
    sent = []
    hook = preview_hook(latent_rgb_for(embedded), sent.append, every=2)
    config = FlowMotionConfig(num_inference_steps=5, guided_steps=2, optimization_steps=1)
    out = run_transfer(
        embedded,
        TransferRequest(
            moving_square(9, 32, 32), "a red ball on grass", config=config, generator=seeded(0), output_type="latent"
        ),
        on_step=hook,
    )
    assert [preview.step for preview in sent] == [0, 2, 4]
    assert all(preview.total == 5 and preview.frames.dtype == np.uint8 for preview in sent)
    latent_frames, rows, columns = out.frames.shape[2:]
    assert sent[-1].frames.shape == (latent_frames, rows, columns, 3)
    assert np.array_equal(sent[-1].frames, preview_frames(out.frames, latent_rgb_for(embedded)))
    with pytest.raises(FlowMotionError, match="every 0 steps"):
        preview_hook(latent_rgb_for(embedded), sent.append, every=0)


def test_a_model_without_a_fit_falls_back_to_its_first_three_channels(tiny_pipe):
    from flowmotion.preview import FALLBACK_NAME

    ti2v = build_tiny_ti2v_pipeline()
    for pipe, channels in ((tiny_pipe, 16), (ti2v, 48)):
        factors = latent_rgb_for(pipe, fallback=True)
        assert factors.name == FALLBACK_NAME and factors.weights.shape == (channels, 3)
    latent = torch.zeros(1, 16, 1, 1, 2)
    latent[0, :3, 0, 0, 0] = torch.tensor([2.0, -2.0, 0.0])
    latent[0, 3:, 0, 0, 1] = 5.0  # only the first three channels show
    frames = preview_frames(latent, latent_rgb_for(tiny_pipe, fallback=True))
    assert frames[0, 0, 0].tolist() == [255, 0, 128] and frames[0, 0, 1].tolist() == [128, 128, 128]


def test_the_fallback_keeps_the_fit_where_there_is_one(embedded):
    assert latent_rgb_for(embedded, fallback=True).name == "embedded"
