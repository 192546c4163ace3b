"""Subject Alignment: the shot's subject masks steer where the take's subjects are, not how they look."""

import numpy as np
import pytest
import torch

import flowmotion
from flowmotion import FlowMotionConfig, FlowMotionError, guidance, transfer
from flowmotion.progress import PhaseClock, RunStats
from flowmotion.toy import metrics
from flowmotion.toy.data import BACKGROUNDS, COLORS, HELD_OUT_PATHS, HELD_OUT_SHAPES, TRAIN_SHAPES, make_clip
from flowmotion.transfer import Sampler
from flowmotion.wan import WanModel

from .helpers import moving_square, seeded

FAST = FlowMotionConfig(num_inference_steps=6, guided_steps=3, optimization_steps=2)


def square_mask(frames: int = 9, height: int = 32, width: int = 48) -> np.ndarray:
    """Where moving_square's square is: bool (frames, height, width)."""
    mask = np.zeros((frames, height, width), bool)
    for f in range(frames):
        x = int(f * (width - 12) / max(1, frames - 1))
        mask[f, height // 3 : height // 3 + 12, x : x + 12] = True
    return mask


def test_objectness_marks_what_stands_out_from_its_frame():
    x = torch.zeros(1, 4, 2, 3, 3)
    x[0, :, 0, 1, 2] = torch.tensor([3.0, 0.0, 4.0, 0.0])
    x[0, :, 1] += torch.tensor([1.0, 2.0, 3.0, 4.0]).view(4, 1, 1)  # a uniform frame, whatever its colour
    out = guidance.objectness(x)
    assert out.shape == (1, 1, 2, 3, 3)
    assert out[0, 0, 0, 1, 2] == pytest.approx(5.0, abs=1e-3)
    assert out[0, 0, 0].flatten().topk(2).values[1] < 1e-2
    assert out[0, 0, 1].max() < 1e-2


def test_subject_alignment_ignores_colour_and_contrast_and_sees_placement():
    coverage = torch.zeros(1, 1, 3, 4, 4)
    coverage[0, 0, torch.arange(3), 1, torch.arange(3)] = 1.0  # a subject moving right
    look = torch.randn(1, 8, 1, 1, 1, generator=seeded(1))
    following = 0.1 * torch.randn(1, 8, 3, 4, 4, generator=seeded(2)) + coverage * look
    elsewhere = following.flip(-1)
    loss = guidance.subject_alignment_loss
    assert loss(coverage, following) < 0.5 * loss(coverage, elsewhere)
    recoloured = 3.0 * following + torch.randn(1, 8, 1, 1, 1, generator=seeded(3))
    assert loss(coverage, recoloured) == pytest.approx(loss(coverage, following).item(), rel=0.05)


def test_latent_coverage_groups_frames_as_the_vae_does(tiny_pipe):
    model = WanModel(tiny_pipe)
    factor, size = tiny_pipe.vae_scale_factor_temporal, tiny_pipe.vae_scale_factor_spatial
    frames = 1 + 2 * factor
    mask = torch.zeros(1, 1, frames, 2 * size, 2 * size)
    mask[:, :, 0, :size, :size] = 1.0  # frame 0: the top-left latent position, whole
    mask[:, :, 1, : size // 2, size:] = 1.0  # inside latent frame 1: a quarter of the top-right one
    mask[:, :, frames - 1, size:, :] = 1.0  # last frame: the bottom row
    coverage = model.latent_coverage(mask)
    assert coverage.shape == (1, 1, 3, 2, 2)
    expected = torch.tensor([[[1.0, 0.0], [0.0, 0.0]], [[0.0, 0.5], [0.0, 0.0]], [[0.0, 0.0], [1.0, 1.0]]])
    assert torch.allclose(coverage[0, 0], expected)
    with pytest.raises(FlowMotionError, match="whole latent frames"):
        model.latent_coverage(mask[:, :, : frames - 1])


def test_a_guided_step_moves_the_latent_towards_the_subjects(tiny_pipe):
    config = FlowMotionConfig(
        optimization_steps=30,
        guidance_scale=1.0,
        latent_alignment_weight=0.0,
        difference_alignment_weight=0.0,
        subject_learning_rate=0.05,
    )
    model = WanModel(tiny_pipe)
    sampler = Sampler(model, config, PhaseClock(RunStats(), torch.device("cpu")))
    embeddings = (model.encode_prompt("a ball"), model.encode_prompt(""))
    start = torch.randn(1, 16, 3, 4, 6, generator=seeded(2))
    coverage = torch.zeros(1, 1, 3, 4, 6)
    coverage[0, 0, torch.arange(3), 2, torch.tensor([0, 2, 4])] = 1.0

    def loss_of(latent):
        velocity = model.guided_velocity(latent, sampler.timesteps[0], *embeddings, 1.0)
        return guidance.subject_alignment_loss(
            coverage, guidance.latent_prediction(latent, sampler.sigmas[0], velocity)
        )

    optimised, _ = sampler.optimise(start, start, torch.zeros_like(start), 0, embeddings, coverage)
    assert loss_of(optimised) < 0.8 * loss_of(start)
    unguided, _ = sampler.optimise(start, start, torch.zeros_like(start), 0, embeddings)
    assert torch.equal(unguided, start)  # with both paper weights at zero only the subjects move it


def test_a_subject_mask_changes_the_take_and_can_be_switched_off(tiny_pipe):
    video, mask = moving_square(), square_mask()
    plain = transfer(tiny_pipe, video, "a ball", config=FAST, generator=seeded(0)).frames
    with_subjects = transfer(tiny_pipe, video, "a ball", config=FAST, generator=seeded(0), subject_mask=mask).frames
    switched_off = transfer(
        tiny_pipe,
        video,
        "a ball",
        config=FAST.replace(subject_alignment=False, subject_placements=0),
        generator=seeded(0),
        subject_mask=mask,
    ).frames
    assert not np.allclose(plain, with_subjects)
    assert np.array_equal(plain, switched_off)
    as_video = np.repeat((mask * 255).astype(np.uint8)[..., None], 3, axis=3)  # a rendered mask video
    again = transfer(tiny_pipe, video, "a ball", config=FAST, generator=seeded(0), subject_mask=as_video).frames
    assert np.array_equal(with_subjects, again)


def test_a_mask_that_does_not_match_the_shot_is_refused_before_any_work(tiny_pipe):
    video, passes = moving_square(), []
    handle = tiny_pipe.transformer.register_forward_pre_hook(lambda module, args: passes.append(1))
    try:
        with pytest.raises(FlowMotionError, match="subject mask has 8 frames of 48x32 but the source has 9"):
            transfer(tiny_pipe, video, "a ball", config=FAST, subject_mask=square_mask()[:8])
        with pytest.raises(FlowMotionError, match="subject mask has 9 frames of 24x32"):
            transfer(tiny_pipe, video, "a ball", config=FAST, subject_mask=square_mask(width=24))
        with pytest.raises(FlowMotionError, match="black in every frame"):
            transfer(tiny_pipe, video, "a ball", config=FAST, subject_mask=np.zeros_like(square_mask()))
    finally:
        handle.remove()
    assert passes == []


def test_subject_learning_rate_must_be_positive():
    with pytest.raises(FlowMotionError, match="subject_learning_rate"):
        FlowMotionConfig(subject_learning_rate=0.0)


@pytest.mark.slow
def test_on_the_embedded_model_playblast_subjects_keep_their_track_in_the_new_scene():
    """Grey playblasts of held-out shapes and paths, re-prompted into coloured scenes: with the
    playblast's subject masks the take's object follows the source track clearly more often."""
    pipe = flowmotion.load_pipeline(flowmotion.EMBEDDED_MODEL, device="cpu")
    rng = np.random.default_rng(11)
    config = FlowMotionConfig.optimized()
    plain, subjects = [], []
    for index in range(8):
        clip = make_clip(rng, shapes=HELD_OUT_SHAPES, paths=HELD_OUT_PATHS, background="playblast")
        color = list(COLORS)[index % len(COLORS)]
        prompt = f"a {color} {TRAIN_SHAPES[index % 3]} on {list(BACKGROUNDS)[index // 2 % len(BACKGROUNDS)]}"
        for scores, mask in ((plain, None), (subjects, clip.mask)):
            take = transfer(pipe, clip.frames, prompt, config=config, generator=seeded(index), subject_mask=mask)
            scores.append(metrics.motion_fidelity(take.frames, color, clip.track)[0])
    print(f"share of frames on track: plain {np.mean(plain):.3f}, with subject masks {np.mean(subjects):.3f}")
    assert np.mean(subjects) >= np.mean(plain) + 0.15
