import numpy as np
import pytest
import torch

import flowmotion
from flowmotion import FlowMotionConfig, FlowMotionError, load_pipeline

from .helpers import moving_square, seeded

FAST = FlowMotionConfig(num_inference_steps=4, guided_steps=2, optimization_steps=1)


@pytest.mark.slow
def test_local_folder_loads_through_from_pretrained(tiny_pipe, tmp_path):
    tiny_pipe.save_pretrained(tmp_path / "wan-tiny")
    loaded = load_pipeline(str(tmp_path / "wan-tiny"), device="cpu")
    assert type(loaded).__name__ == "WanPipeline" and loaded.transformer.dtype == torch.float32
    assert loaded.vae.dtype == torch.float32
    source = moving_square()
    original = transfer_frames(tiny_pipe, source)
    reloaded = transfer_frames(loaded, source)
    assert np.allclose(original, reloaded, atol=1e-6)


def transfer_frames(pipe, source):
    return flowmotion.transfer(pipe, source, "a ball", config=FAST, generator=seeded(0)).frames


def test_local_folder_honours_dtype(tiny_pipe, tmp_path):
    tiny_pipe.save_pretrained(tmp_path / "wan-tiny")
    loaded = load_pipeline(str(tmp_path / "wan-tiny"), device="cpu", dtype=torch.bfloat16)
    assert loaded.transformer.dtype == torch.bfloat16
    assert loaded.vae.dtype == torch.float32  # the VAE always decodes in fp32


def test_the_embedded_model_ships_in_the_package_and_loads_like_a_real_one():
    from flowmotion.loading import EMBEDDED_FOLDER

    size = sum(p.stat().st_size for p in EMBEDDED_FOLDER.rglob("*") if p.is_file())
    assert size <= 20 * 2**20
    pipe = load_pipeline("embedded", device="cpu")
    assert type(pipe).__name__ == "WanPipeline" and pipe.transformer.dtype == torch.float32
    assert {type(pipe.transformer).__name__, type(pipe.vae).__name__, type(pipe.text_encoder).__name__} == {
        "WanTransformer3DModel",
        "AutoencoderKLWan",
        "UMT5EncoderModel",
    }
    again = load_pipeline("embedded", device="cpu")
    for a, b in zip(pipe.transformer.parameters(), again.transformer.parameters(), strict=True):
        assert torch.equal(a, b)


def test_missing_hub_weights_say_how_to_fetch_them(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FlowMotionError) as error:
        load_pipeline(flowmotion.WAN_MODEL_ID, device="cpu")
    message = str(error.value)
    assert flowmotion.WAN_MODEL_ID in message and "hf download" in message
    assert "Traceback" not in message and len(message.splitlines()) == 1


def test_folder_that_is_not_a_diffusers_model(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(FlowMotionError, match="has no model_index.json"):
        load_pipeline(str(tmp_path), device="cpu")


def test_damaged_local_folder_is_named(tiny_pipe, tmp_path):
    tiny_pipe.save_pretrained(tmp_path / "wan-tiny")
    for weights in (tmp_path / "wan-tiny" / "transformer").glob("*.safetensors"):
        weights.unlink()
    with pytest.raises(FlowMotionError, match="could not load model"):
        load_pipeline(str(tmp_path / "wan-tiny"), device="cpu")


def test_neither_folder_nor_hub_id(tmp_path):
    with pytest.raises(FlowMotionError, match="neither an existing folder nor a hub id"):
        load_pipeline(str(tmp_path / "missing" / "model"), device="cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without a GPU")
def test_cuda_without_a_gpu_is_refused():
    with pytest.raises(FlowMotionError, match="no CUDA GPU"):
        load_pipeline("embedded", device="cuda")


def test_the_working_area_is_the_callers_else_the_embedded_models_training_area(tmp_path):
    import json

    from flowmotion.loading import EMBEDDED_FOLDER, max_area_for

    shipped = json.loads((EMBEDDED_FOLDER / "TRAINING.json").read_text())
    area = shipped["width"] * shipped["height"] if "width" in shipped else shipped["size"] ** 2
    assert max_area_for("embedded") == area
    assert max_area_for("embedded", 4096) == 4096
    assert max_area_for("Wan-AI/Wan2.1-T2V-1.3B-Diffusers") is None
    assert max_area_for("/models/wan", 399360) == 399360
    (tmp_path / "TRAINING.json").write_text(json.dumps({"width": 80, "height": 48}))
    assert max_area_for(str(tmp_path)) == 80 * 48, "a folder trained by flowmotion.toy.train works at its own area"


def test_a_missing_embedded_model_says_how_to_get_it_back(tmp_path, monkeypatch):
    import flowmotion.loading

    monkeypatch.setattr(flowmotion.loading, "EMBEDDED_FOLDER", tmp_path / "embedded")
    with pytest.raises(FlowMotionError, match="embedded model is missing .*python -m flowmotion.toy.train"):
        load_pipeline("embedded", device="cpu")


@pytest.mark.slow
def test_the_embedded_model_plans_whole_vae_chunks_for_its_halved_time():
    from flowmotion.wan import WanModel

    model = WanModel(load_pipeline("embedded", device="cpu"))
    # Its VAE halves time once but, like Wan's, encodes 4-frame chunks after the first frame.
    assert model.pipe.vae_scale_factor_temporal == 2 and model.temporal_multiple == 4
    assert model.latent_shape(17, 32, 32)[2:] == (9, 8, 8)
    for frames in (9, 11, 17):
        out = flowmotion.transfer(
            model.pipe,
            moving_square(frames=frames, height=32, width=32),
            "a red ball on grass",
            config=FAST,
            generator=torch.Generator().manual_seed(0),
        )
        assert out.frames.shape == (frames, 32, 32, 3) and out.plan.model_frames in (9, 13, 17)


@pytest.mark.slow
def test_the_embedded_vae_keeps_moving_objects_moving():
    from flowmotion.toy.data import make_clip
    from flowmotion.toy.metrics import track_errors
    from flowmotion.toy.train import to_video
    from flowmotion.wan import WanModel

    model = WanModel(load_pipeline("embedded", device="cpu"))
    rng = np.random.default_rng(5)
    on_track = []
    for _ in range(8):
        clip = make_clip(rng, background="grass")
        with torch.no_grad():
            decoded = model.decode(model.encode_video(to_video(torch.from_numpy(clip.frames[None]))))
        frames = ((decoded[0].permute(1, 2, 3, 0).clamp(-1, 1) + 1) / 2).numpy()
        on_track.append((track_errors(frames, clip.color, clip.track) <= 3.0).mean())
    # A VAE that quarters time left half of these frames' objects behind (0.50); this one keeps 0.93.
    assert np.mean(on_track) >= 0.85, np.round(on_track, 2)
