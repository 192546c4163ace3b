"""The request object and the step hook."""

import pytest
import torch

from flowmotion import FlowMotionConfig, TransferCancelled, forward_pass_count, transfer
from flowmotion.request import TransferRequest
from flowmotion.transfer import run_transfer

from .helpers import seeded

FAST = FlowMotionConfig(num_inference_steps=6, guided_steps=3, optimization_steps=2)


def test_the_keyword_call_is_the_request_call(tiny_pipe, source_video):
    noise = torch.randn(1, 16, 3, 4, 6, generator=seeded(2))
    by_keywords = transfer(
        tiny_pipe,
        source_video,
        "a cube",
        negative_prompt="dark",
        config=FAST,
        latents=noise.clone(),
        output_type="latent",
    ).frames
    request = TransferRequest(
        source_video, "a cube", negative_prompt="dark", config=FAST, latents=noise.clone(), output_type="latent"
    )
    assert torch.equal(run_transfer(tiny_pipe, request).frames, by_keywords)
    other = run_transfer(tiny_pipe, request.replace(prompt="a ball", latents=noise.clone())).frames
    assert not torch.equal(other, by_keywords)


def test_the_hook_sees_every_denoising_step_once(tiny_pipe, source_video):
    seen = []
    request = TransferRequest(source_video, "a ball", config=FAST, generator=seeded(0), output_type="latent")
    out = run_transfer(tiny_pipe, request, on_step=seen.append)
    assert [info.step for info in seen] == list(range(6))
    assert {info.total for info in seen} == {6}
    assert all(info.latent.shape == info.latent_prediction.shape == (1, 16, 3, 4, 6) for info in seen)
    sigmas = [info.sigma for info in seen]
    assert sigmas == sorted(sigmas, reverse=True) and sigmas[0] > 0.99
    # The last step lands on sigma 0: its latent is the prediction, and the result.
    assert torch.equal(seen[-1].latent, seen[-1].latent_prediction) and torch.equal(seen[-1].latent, out.frames)


def test_the_prediction_is_the_latent_minus_sigma_times_the_velocity(tiny_pipe, source_video):
    """On an unguided step, the Euler update from the previous latent agrees with the prediction:
    z_next = z + (s_next - s) * v with v = (z - x0) / s."""
    seen = []
    request = TransferRequest(source_video, "a ball", config=FAST, generator=seeded(0), output_type="latent")
    run_transfer(tiny_pipe, request, on_step=seen.append)
    for before, step in zip(seen[3:-1], seen[4:], strict=True):
        sigma_next = seen[step.step + 1].sigma if step.step + 1 < len(seen) else 0.0
        velocity = (before.latent - step.latent_prediction) / step.sigma
        assert torch.allclose(step.latent, before.latent + (sigma_next - step.sigma) * velocity, atol=1e-4)


def test_cancelling_from_the_hook_stops_the_run_at_that_step(tiny_pipe, source_video):
    calls = []
    handle = tiny_pipe.transformer.register_forward_pre_hook(lambda module, args: calls.append(1))
    steps = []

    def cancel_after_two(info):
        steps.append(info.step)
        if info.step == 1:
            raise TransferCancelled("the artist cancelled")

    config = FAST.replace(guided_steps=0)
    try:
        with pytest.raises(TransferCancelled, match="the artist cancelled"):
            run_transfer(
                tiny_pipe,
                TransferRequest(source_video, "a ball", config=config, generator=seeded(0)),
                on_step=cancel_after_two,
            )
    finally:
        handle.remove()
    assert steps == [0, 1]
    assert len(calls) == 2 * 2 < forward_pass_count(config)
