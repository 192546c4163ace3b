import numpy as np
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler

import flowmotion
from flowmotion import FlowMotionConfig, FlowMotionError, TransferCancelled, transfer
from flowmotion.progress import PHASES
from flowmotion.transfer import Sampler
from flowmotion.wan import WanModel

from .helpers import moving_square, seeded

FAST = FlowMotionConfig(num_inference_steps=6, guided_steps=3, optimization_steps=2)


def count_passes(pipe):
    """Counts transformer forward passes with a hook of its own, independent of the library's count."""
    calls = []
    handle = pipe.transformer.register_forward_pre_hook(lambda module, args: calls.append(1))
    return calls, handle


def test_without_guidance_the_sampler_is_wan_pipeline_with_an_euler_scheduler(fresh_pipe):
    fresh_pipe.scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    source = moving_square(frames=9, height=32, width=48)
    noise = torch.randn(1, 16, 3, 4, 6, generator=seeded(3))
    config = FlowMotionConfig(num_inference_steps=8, guided_steps=2, motion_guidance=False, guidance_scale=6.0)
    prompt, negative = "a red ball on grass", "blurry"

    reference = fresh_pipe(
        prompt,
        negative_prompt=negative,
        height=32,
        width=48,
        num_frames=9,
        num_inference_steps=8,
        guidance_scale=6.0,
        latents=noise.clone(),
        output_type="latent",
    )
    ours = transfer(
        fresh_pipe, source, prompt, negative_prompt=negative, config=config, latents=noise.clone(), output_type="latent"
    )
    assert torch.allclose(ours.frames, reference.frames, atol=1e-5, rtol=1e-5)

    reference_video = fresh_pipe(
        prompt,
        negative_prompt=negative,
        height=32,
        width=48,
        num_frames=9,
        num_inference_steps=8,
        guidance_scale=6.0,
        latents=noise.clone(),
    ).frames[0]
    ours_video = transfer(
        fresh_pipe, source, prompt, negative_prompt=negative, config=config, latents=noise.clone()
    ).frames
    assert ours_video.shape == reference_video.shape == (9, 32, 48, 3)
    assert np.allclose(ours_video, reference_video, atol=1e-5)


def test_same_seed_same_video_other_seed_other_video(tiny_pipe, source_video):
    first = transfer(tiny_pipe, source_video, "a cube", config=FAST, generator=seeded(7)).frames
    again = transfer(tiny_pipe, source_video, "a cube", config=FAST, generator=seeded(7)).frames
    other = transfer(tiny_pipe, source_video, "a cube", config=FAST, generator=seeded(8)).frames
    assert np.array_equal(first, again)
    assert not np.allclose(first, other)


def test_guidance_changes_the_result(tiny_pipe, source_video):
    noise = torch.randn(1, 16, 3, 4, 6, generator=seeded(1))
    plain = transfer(
        tiny_pipe,
        source_video,
        "a cube",
        config=FAST.replace(motion_guidance=False),
        latents=noise,
        output_type="latent",
    ).frames
    guided = transfer(tiny_pipe, source_video, "a cube", config=FAST, latents=noise, output_type="latent").frames
    assert not torch.allclose(plain, guided)


@pytest.mark.parametrize(
    "changes, expected",
    [({}, 180), ({"source_motion": "clean_latent"}, 160), ({"motion_guidance": False}, 100)],
)
def test_forward_passes_at_the_papers_settings(tiny_pipe, changes, expected):
    config = FlowMotionConfig(**changes)
    calls, handle = count_passes(tiny_pipe)
    try:
        out = transfer(
            tiny_pipe,
            moving_square(frames=5, height=16, width=16),
            "a ball",
            config=config,
            generator=seeded(0),
            output_type="latent",
        )
    finally:
        handle.remove()
    assert len(calls) == expected == out.stats.forward_passes


def test_no_network_parameter_ever_gets_a_gradient(tiny_pipe, source_video):
    for component in (tiny_pipe.transformer, tiny_pipe.vae, tiny_pipe.text_encoder):
        component.zero_grad(set_to_none=True)
    assert all(p.requires_grad for p in tiny_pipe.transformer.parameters())
    transfer(tiny_pipe, source_video, "a ball", config=FAST, generator=seeded(0))
    for component in (tiny_pipe.transformer, tiny_pipe.vae, tiny_pipe.text_encoder):
        assert all(p.grad is None for p in component.parameters())


def test_adam_moves_the_latent_towards_the_source_motion(tiny_pipe):
    """One guided step lowers the motion loss against the source: the optimisation has the right sign."""
    from flowmotion import guidance
    from flowmotion.progress import PhaseClock, RunStats

    config = FlowMotionConfig(optimization_steps=20, learning_rate=0.05, guidance_scale=1.0)
    model = WanModel(tiny_pipe)
    sampler = Sampler(model, config, PhaseClock(RunStats(), torch.device("cpu")))
    timesteps, sigmas = sampler.timesteps, sampler.sigmas
    embeddings = (model.encode_prompt("a ball"), model.encode_prompt(""))
    start = torch.randn(1, 16, 3, 4, 6, generator=seeded(2))
    source_motion = torch.randn(1, 16, 3, 4, 6, generator=seeded(4))

    def loss_of(latent):
        velocity = model.guided_velocity(latent, timesteps[0], *embeddings, 1.0)
        target = guidance.latent_prediction(latent, sigmas[0], velocity)
        return guidance.motion_loss(source_motion, target, 20.0, 5.0).item()

    optimised, _ = sampler.optimise(start, start, source_motion, 0, embeddings)
    assert loss_of(optimised) < 0.9 * loss_of(start)


def test_result_has_exactly_the_asked_count_and_size(tiny_pipe):
    source = moving_square(frames=10, height=30, width=50)
    out = transfer(tiny_pipe, source, "a ball", config=FAST, generator=seeded(0))
    assert out.frames.shape == (10, 30, 50, 3) and out.frames.dtype == np.float32
    assert (out.plan.model_frames, out.plan.model_height, out.plan.model_width) == (9, 32, 48)
    assert 0.0 <= out.frames.min() and out.frames.max() <= 1.0
    asked = transfer(tiny_pipe, source, "a ball", config=FAST, generator=seeded(0), num_frames=6, height=20, width=24)
    assert asked.frames.shape == (6, 20, 24, 3)
    capped = transfer(tiny_pipe, source, "a ball", config=FAST, generator=seeded(0), max_area=16 * 32)
    assert capped.frames.shape == (10, 30, 50, 3)
    assert (capped.plan.model_height, capped.plan.model_width) == (16, 16)


def test_output_types(tiny_pipe, source_video):
    pil = transfer(tiny_pipe, source_video, "a ball", config=FAST, generator=seeded(0), output_type="pil").frames
    assert len(pil) == 9 and pil[0].size == (48, 32) and pil[0].mode == "RGB"
    latent = transfer(tiny_pipe, source_video, "a ball", config=FAST, generator=seeded(0), output_type="latent")
    assert latent.frames.shape == (1, 16, 3, 4, 6)
    with pytest.raises(FlowMotionError, match="unknown output_type 'gif'"):
        transfer(tiny_pipe, source_video, "a ball", config=FAST, output_type="gif")


def test_wrong_latents_shape_is_refused(tiny_pipe, source_video):
    with pytest.raises(FlowMotionError, match=r"latents have shape \(1, 16, 2, 4, 6\) but this shot needs"):
        transfer(tiny_pipe, source_video, "a ball", config=FAST, latents=torch.zeros(1, 16, 2, 4, 6))


def test_progress_reports_every_phase_in_order(tiny_pipe, source_video):
    events = []
    out = transfer(tiny_pipe, source_video, "a ball", config=FAST, generator=seeded(0), on_progress=events.append)
    assert [e.phase for e in events] == (
        ["encode_prompt", "encode_source"] + ["source_motion"] * 3 + ["guided_step"] * 3 + ["sampling"] * 3 + ["decode"]
    )
    steps = [e.step for e in events if e.phase in ("guided_step", "sampling")]
    assert steps == [1, 2, 3, 4, 5, 6]
    assert [e.total for e in events if e.phase in ("guided_step", "sampling")] == [6] * 6
    elapsed = [e.elapsed for e in events]
    assert elapsed == sorted(elapsed)
    assert events[-1].forward_passes == out.stats.forward_passes == flowmotion.forward_pass_count(FAST)
    assert events[0].eta_seconds is None and events[-1].eta_seconds == 0.0
    assert set(out.stats.phase_seconds) == set(PHASES) and out.stats.peak_memory_bytes > 0


def test_cancellation_stops_before_the_next_forward_pass(tiny_pipe, source_video):
    calls, handle = count_passes(tiny_pipe)
    try:
        with pytest.raises(TransferCancelled):
            transfer(
                tiny_pipe,
                source_video,
                "a ball",
                config=FAST,
                generator=seeded(0),
                should_cancel=lambda: len(calls) >= 5,
            )
    finally:
        handle.remove()
    assert len(calls) == 5


def test_cancel_before_start_runs_nothing(tiny_pipe, source_video):
    calls, handle = count_passes(tiny_pipe)
    try:
        with pytest.raises(TransferCancelled):
            transfer(tiny_pipe, source_video, "a ball", config=FAST, should_cancel=lambda: True)
    finally:
        handle.remove()
    assert calls == []


def test_bad_prompt_and_video_are_refused(tiny_pipe):
    with pytest.raises(FlowMotionError, match="must be text"):
        transfer(tiny_pipe, moving_square(), None, config=FAST)
    with pytest.raises(FlowMotionError, match="no frames"):
        transfer(tiny_pipe, np.zeros((0, 32, 32, 3), np.uint8), "a ball", config=FAST)


def test_a_round_trip_through_the_vae_comes_back_at_the_shots_size_without_the_transformer(tiny_pipe):
    calls, handle = count_passes(tiny_pipe)
    try:
        for frames, height, width in ((7, 30, 50), (9, 32, 48), (1, 24, 40)):
            shot = moving_square(frames=frames, height=height, width=width)
            carried = flowmotion.round_trip(tiny_pipe, shot)
            assert carried.shape == shot.shape and carried.dtype == np.float32
            assert 0.0 <= carried.min() and carried.max() <= 1.0
            assert np.array_equal(carried, flowmotion.round_trip(tiny_pipe, shot)), "the posterior's mean: no noise"
    finally:
        handle.remove()
    assert calls == []


def test_the_embedded_models_round_trip_keeps_a_shot_and_keeps_more_of_it_at_a_larger_area():
    from flowmotion.toy.data import training_clips

    pipe = flowmotion.load_pipeline(flowmotion.EMBEDDED_MODEL, device="cpu")
    shot = training_clips(1, 123, 17, 160, 96)[0].frames  # a scene of the kind the model learned
    error = {
        area: float(np.abs(flowmotion.round_trip(pipe, shot, max_area=area) - shot / 255.0).mean())
        for area in (960, 3840)
    }
    print("mean absolute error of the round trip by working area:", error)
    assert error[3840] < 0.05, "the shipped VAE reproduces a scene of its world at its own area"
    assert error[3840] < error[960], "a quarter of the area carries the scene less well"
