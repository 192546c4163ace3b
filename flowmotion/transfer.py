"""FlowMotion sampling: Euler over the scheduler's sigmas, with latent optimisation in the first steps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from diffusers.utils.torch_utils import randn_tensor

from . import guidance
from .config import FlowMotionConfig
from .errors import FlowMotionError, TransferCancelled
from .progress import PhaseClock, Progress, RunStats
from .video import ShapePlan, as_frames, plan_shape, resample, to_unit_float
from .wan import WanModel

OUTPUT_TYPES = ("np", "pil", "latent")


@dataclass
class FlowMotionOutput:
    """The result of one transfer.

    `frames`: for 'np' a float32 array (frames, height, width, 3) in [0, 1]; for 'pil' a list of
    PIL images; for 'latent' the final normalised latent (1, channels, frames, height, width).
    """

    frames: object
    stats: RunStats
    plan: ShapePlan


def forward_pass_count(config: FlowMotionConfig) -> int:
    """Transformer forward passes one transfer runs under `config`."""
    per_velocity = 2 if config.guidance_scale > 1.0 else 1
    guided = config.guided_step_count
    if config.source_motion == "latent_prediction":
        per_source = 2 if config.source_guidance_scale > 1.0 else 1
    else:
        per_source = 0
    per_guided_step = per_source + config.optimization_steps * per_velocity + per_velocity
    return guided * per_guided_step + (config.num_inference_steps - guided) * per_velocity


def _source_tensor(frames: np.ndarray, plan: ShapePlan) -> torch.Tensor:
    """uint8 frames -> (1, 3, F, H, W) in [-1, 1] at the model's shape."""
    video = torch.from_numpy(to_unit_float(frames)).permute(0, 3, 1, 2)
    video = resample(video, plan.model_frames, plan.model_height, plan.model_width)
    return (video * 2.0 - 1.0).permute(1, 0, 2, 3).unsqueeze(0)


def _result_frames(decoded: torch.Tensor, plan: ShapePlan) -> np.ndarray:
    """Decoded (1, 3, F, H, W) in [-1, 1] -> float frames in [0, 1] at the caller's shape."""
    video = (decoded[0].float().permute(1, 0, 2, 3) / 2 + 0.5).clamp(0, 1)
    video = resample(video, plan.out_frames, plan.out_height, plan.out_width).clamp(0, 1)
    return video.permute(0, 2, 3, 1).cpu().numpy()


def _to_output_type(frames: np.ndarray, output_type: str):
    if output_type == "pil":
        from PIL import Image

        return [Image.fromarray((frame * 255).round().astype(np.uint8)) for frame in frames]
    return frames


class Sampler:
    """One transfer's state: the model, its embeddings, the schedule and the source."""

    def __init__(self, model: WanModel, config: FlowMotionConfig, clock: PhaseClock, generator):
        self.model = model
        self.config = config
        self.clock = clock
        self.generator = generator

    def source_motion(self, source_latent: torch.Tensor, timestep: torch.Tensor, sigma: float, source_embedding):
        """m_src at this step: the source latent itself, or its one-step prediction from fresh noise."""
        if self.config.source_motion == "clean_latent":
            return source_latent
        noise = randn_tensor(
            source_latent.shape, generator=self.generator, device=source_latent.device, dtype=source_latent.dtype
        )
        noised = guidance.noised_latent(source_latent, sigma, noise)
        velocity = self.model.guided_velocity(
            noised, timestep, source_embedding, source_embedding, self.config.source_guidance_scale
        )
        return guidance.latent_prediction(noised, sigma, velocity)

    def optimise(self, latent, initial_noise, source_motion, timestep, sigma, sigma_0, is_first, embeddings):
        """Adam on the latent towards the source motion; gradients reach only the latent."""
        config = self.config
        entered = latent
        reference = None
        if config.velocity_regularization and not is_first:
            reference = guidance.average_velocity(entered, initial_noise, sigma, sigma_0)
        variable = latent.detach().clone().requires_grad_(True)
        optimizer = torch.optim.Adam([variable], lr=config.learning_rate)
        difference_weight = config.difference_alignment_weight if config.difference_alignment else 0.0
        for _ in range(config.optimization_steps):
            velocity = self.model.guided_velocity(variable.detach(), timestep, *embeddings, config.guidance_scale)
            if reference is not None:
                velocity = guidance.regularize_velocity(velocity, reference, config.velocity_regularization_gamma)
            target_motion = guidance.latent_prediction(variable, sigma, velocity)
            loss = guidance.motion_loss(
                source_motion, target_motion, config.latent_alignment_weight, difference_weight
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return variable.detach()

    def run(self, initial_noise, source_latent, embeddings, source_embedding) -> torch.Tensor:
        config = self.config
        timesteps, sigmas = self.model.schedule(config.num_inference_steps)
        guided_steps = config.guided_step_count
        latent = initial_noise
        for i, timestep in enumerate(timesteps):
            sigma, sigma_next = sigmas[i], sigmas[i + 1]
            if i < guided_steps:
                self.clock.enter("guided_step", i + 1, len(timesteps), self.model.forward_passes)
                source_motion = self.source_motion(source_latent, timestep, sigma, source_embedding)
                latent = self.optimise(
                    latent, initial_noise, source_motion, timestep, sigma, sigmas[0], i == 0, embeddings
                )
            else:
                self.clock.enter("sampling", i + 1, len(timesteps), self.model.forward_passes)
            velocity = self.model.guided_velocity(latent, timestep, *embeddings, config.guidance_scale)
            latent = latent + (sigma_next - sigma) * velocity
        return latent


def transfer(
    pipe,
    video,
    prompt: str,
    *,
    negative_prompt: str = "",
    config: FlowMotionConfig | None = None,
    generator: torch.Generator | None = None,
    latents: torch.Tensor | None = None,
    output_type: str = "np",
    on_progress: Callable[[Progress], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    num_frames: int | None = None,
    height: int | None = None,
    width: int | None = None,
) -> FlowMotionOutput:
    """Generate a video of `prompt` that keeps the motion of `video`.

    `pipe` is a diffusers WanPipeline (full size or tiny). `video` is a path, an array or a list
    of images (see `flowmotion.video.as_frames`). The result has `num_frames` x `height` x `width`
    (by default the source's); the model itself works at the nearest legal shape. `latents` is
    the initial noise at the model's latent shape; without it, noise is drawn from `generator`.
    `should_cancel` is checked before every transformer forward pass.
    """
    config = config or FlowMotionConfig()
    if output_type not in OUTPUT_TYPES:
        raise FlowMotionError(f"unknown output_type {output_type!r}; choose one of {', '.join(OUTPUT_TYPES)}")
    if not isinstance(prompt, str) or not isinstance(negative_prompt, str):
        raise FlowMotionError("prompt and negative_prompt must be text")
    frames = as_frames(video)

    def check_cancel() -> None:
        if should_cancel is not None and should_cancel():
            raise TransferCancelled("the transfer was cancelled")

    model = WanModel(pipe, config.max_sequence_length, before_forward=check_cancel)
    plan = plan_shape(
        frames.shape[0], frames.shape[1], frames.shape[2],
        num_frames=num_frames, height=height, width=width,
        spatial_multiple=model.spatial_multiple, temporal_multiple=model.temporal_multiple,
    )
    shape = model.latent_shape(plan.model_frames, plan.model_height, plan.model_width)
    if latents is not None and tuple(latents.shape) != shape:
        raise FlowMotionError(f"latents have shape {tuple(latents.shape)} but this shot needs {shape}")

    clock = PhaseClock(RunStats(), model.device, on_progress, forward_pass_count(config))
    check_cancel()
    clock.enter("encode_source", 0, 1, 0)
    embeddings = (model.encode_prompt(prompt), model.encode_prompt(negative_prompt))
    source_latent = source_embedding = None
    if config.guided_step_count:
        source_latent = model.encode_video(_source_tensor(frames, plan))
        if config.source_motion == "latent_prediction":
            source_embedding = model.encode_prompt(config.source_prompt)
    check_cancel()

    if latents is None:
        initial_noise = randn_tensor(shape, generator=generator, device=model.device, dtype=torch.float32)
    else:
        initial_noise = latents.to(model.device, torch.float32)
    latent = Sampler(model, config, clock, generator).run(initial_noise, source_latent, embeddings, source_embedding)

    if output_type == "latent":
        return FlowMotionOutput(latent, clock.finish(model.forward_passes), plan)
    check_cancel()
    clock.enter("decode", 0, 1, model.forward_passes)
    result = _result_frames(model.decode(latent), plan)
    stats = clock.finish(model.forward_passes)
    return FlowMotionOutput(_to_output_type(result, output_type), stats, plan)
