"""The model interface: the factory picks the adapter, and a second Wan layout runs through it."""

import numpy as np
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, WanPipeline

from flowmotion import FlowMotionConfig, FlowMotionError, forward_pass_count, transfer
from flowmotion.model import VideoModel, model_for
from flowmotion.tiny import build_tiny_ti2v_pipeline, build_transformer
from flowmotion.wan import Wan22Model, WanModel

from .helpers import moving_square, seeded

FAST = FlowMotionConfig(num_inference_steps=6, guided_steps=3, optimization_steps=2, camera_placement=False)


@pytest.fixture(scope="module")
def ti2v_pipe():
    return build_tiny_ti2v_pipeline()


def count_passes(pipe):
    calls = []
    handle = pipe.transformer.register_forward_pre_hook(lambda module, args: calls.append(1))
    return calls, handle


def test_the_factory_picks_the_adapter_from_the_pipeline(tiny_pipe, ti2v_pipe):
    wan21, wan22 = model_for(tiny_pipe), model_for(ti2v_pipe)
    assert type(wan21) is WanModel and type(wan22) is Wan22Model
    assert isinstance(wan21, VideoModel) and isinstance(wan22, VideoModel)
    assert (wan21.spatial_multiple, wan21.temporal_multiple) == (16, 4)
    assert (wan22.spatial_multiple, wan22.temporal_multiple) == (32, 4)
    assert wan21.key != wan22.key


def test_a_pipeline_of_no_known_family_is_refused_by_name():
    class ImagePipeline:
        pass

    with pytest.raises(FlowMotionError, match="no adapter for a ImagePipeline; it runs Wan2.2 TI2V, Wan2.1"):
        model_for(ImagePipeline())


def test_a_two_expert_wan22_pipeline_is_refused_with_the_reason(tiny_pipe):
    two_experts = WanPipeline(
        tokenizer=tiny_pipe.tokenizer,
        text_encoder=tiny_pipe.text_encoder,
        vae=tiny_pipe.vae,
        scheduler=tiny_pipe.scheduler,
        transformer=tiny_pipe.transformer,
        transformer_2=build_transformer(),
        boundary_ratio=0.875,
    )
    with pytest.raises(FlowMotionError, match="two-expert Wan2.2"):
        model_for(two_experts)


def test_wan22_without_guidance_is_wan_pipeline_with_an_euler_scheduler():
    pipe = build_tiny_ti2v_pipeline()
    pipe.scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    noise = torch.randn(1, 48, 3, 2, 4, generator=seeded(3))
    config = FlowMotionConfig(num_inference_steps=5, guided_steps=2, motion_guidance=False, guidance_scale=5.0)
    reference = pipe(
        "a red ball",
        negative_prompt="blurry",
        height=32,
        width=64,
        num_frames=9,
        num_inference_steps=5,
        guidance_scale=5.0,
        latents=noise.clone(),
        output_type="latent",
    ).frames
    ours = transfer(
        pipe,
        moving_square(9, 32, 64),
        "a red ball",
        negative_prompt="blurry",
        config=config,
        latents=noise.clone(),
        output_type="latent",
    ).frames
    assert torch.allclose(ours, reference, atol=1e-5, rtol=1e-5)


def test_wan22_transfer_counts_its_passes_exactly_and_honours_its_multiples(ti2v_pipe):
    source = moving_square(frames=10, height=40, width=56)
    calls, handle = count_passes(ti2v_pipe)
    try:
        out = transfer(ti2v_pipe, source, "a ball", config=FAST, generator=seeded(0))
    finally:
        handle.remove()
    plan = out.plan
    assert plan.model_height % 32 == 0 and plan.model_width % 32 == 0 and (plan.model_frames - 1) % 4 == 0
    assert out.frames.shape == (10, 40, 56, 3) and np.isfinite(out.frames).all()
    assert len(calls) == out.stats.forward_passes == forward_pass_count(FAST)


def test_wan22_latent_has_48_channels_at_16x_compression(ti2v_pipe):
    out = transfer(
        ti2v_pipe, moving_square(9, 64, 96), "a ball", config=FAST, generator=seeded(0), output_type="latent"
    )
    assert tuple(out.frames.shape) == (1, 48, 3, 4, 6)


def test_the_sampler_steps_on_unipc_timesteps_over_1000(tiny_pipe):
    model = model_for(tiny_pipe)
    timesteps, sigmas = model.schedule(8)
    assert type(tiny_pipe.scheduler).__name__ == "UniPCMultistepScheduler"
    assert torch.equal(timesteps, tiny_pipe.scheduler.timesteps)
    assert sigmas == [t / 1000 for t in timesteps.tolist()] + [0.0]
    # UniPC's own sigmas, before its integer timesteps: the same schedule to within the rounding.
    assert np.allclose(sigmas, tiny_pipe.scheduler.sigmas.numpy(), atol=1e-3)
    assert sigmas != tiny_pipe.scheduler.sigmas.tolist()


def test_a_unipc_run_is_euler_on_those_sigmas(tiny_pipe):
    """The transfer without guidance against a hand-written Euler loop over UniPC's timesteps / 1000."""
    noise = torch.randn(1, 16, 3, 4, 6, generator=seeded(5))
    config = FlowMotionConfig(num_inference_steps=5, guided_steps=2, motion_guidance=False, guidance_scale=4.0)
    ours = transfer(
        tiny_pipe,
        moving_square(9, 32, 48),
        "a cube",
        negative_prompt="dark",
        config=config,
        latents=noise.clone(),
        output_type="latent",
    ).frames

    with torch.no_grad():
        cond, uncond = tiny_pipe.encode_prompt(
            "a cube", "dark", do_classifier_free_guidance=True, max_sequence_length=config.max_sequence_length
        )
        tiny_pipe.scheduler.set_timesteps(5)
        timesteps = tiny_pipe.scheduler.timesteps
        sigmas = [t / 1000 for t in timesteps.tolist()] + [0.0]
        latent = noise.clone()
        for i, t in enumerate(timesteps):

            def velocity(embedding, latent=latent, t=t):
                return tiny_pipe.transformer(
                    hidden_states=latent, timestep=t.expand(1), encoder_hidden_states=embedding, return_dict=False
                )[0]

            v_cond, v_uncond = velocity(cond), velocity(uncond)
            latent = latent + (sigmas[i + 1] - sigmas[i]) * (v_uncond + 4.0 * (v_cond - v_uncond))
    assert torch.allclose(ours, latent, atol=1e-5, rtol=1e-5)
