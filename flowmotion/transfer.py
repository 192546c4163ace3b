"""FlowMotion sampling: Euler over the scheduler's timesteps / 1000, with latent optimisation in the first steps.

The sampler steps on the scheduler's timesteps / 1000 (then 0) with its own Euler update, as the
authors' release does, whatever scheduler the pipeline carries; it reaches the model only through
`flowmotion.model.VideoModel`, so it names no model family.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from diffusers.utils.torch_utils import randn_tensor

from . import camera, guidance
from .cache import PromptCache, SourceMotion, TransferCache, source_key
from .config import FlowMotionConfig
from .errors import FlowMotionError, TransferCancelled
from .model import VideoModel, model_for
from .progress import PhaseClock, Progress, RunStats
from .request import OUTPUT_TYPES, StepHook, StepInfo, TransferRequest
from .runtime import RuntimeOptions, free_memory_bytes, offload_text_encoder, plan_runtime, run_size
from .video import ShapePlan, as_frames, plan_shape, resample, to_uint8, to_unit_float


@dataclass
class FlowMotionOutput:
    """The result of one transfer.

    `frames`: for 'np' a float32 array (frames, height, width, 3) in [0, 1]; for 'pil' a list of
    PIL images; for 'latent' the final normalised latent (1, channels, frames, height, width).
    """

    frames: Any
    stats: RunStats
    plan: ShapePlan


def source_passes_per_step(config: FlowMotionConfig) -> int:
    if config.source_motion == "clean_latent":
        return 0
    if config.source_guidance_scale <= 1.0 or config.skip_identical_source_cfg:
        return 1
    return 2


def optimization_velocity_evaluations(config: FlowMotionConfig) -> int:
    """Guided velocities (each one CFG pair) the Adam iterations of one guided step evaluate."""
    if config.reuse_velocity_across_iterations:
        return min(1, config.optimization_steps)
    return config.optimization_steps


def guided_velocity_evaluations(config: FlowMotionConfig) -> int:
    """Guided velocities one guided step evaluates: its Adam iterations', and its Euler step's unless
    that reuses the last of them."""
    adam = optimization_velocity_evaluations(config)
    return adam + (0 if config.reuse_velocity_for_euler_step and adam else 1)


def placement_steps(sigmas: list[float], config: FlowMotionConfig) -> list[int]:
    """The steps at which Subject Placement runs: for each placement noise level, the first step at or
    below it (levels that meet on one step place once there)."""
    steps = len(sigmas) - 1
    chosen = {next((i for i in range(steps) if sigmas[i] <= level), None) for level in config.placement_sigmas}
    return sorted(i for i in chosen if i is not None)


def forward_pass_count(config: FlowMotionConfig, source_cached: bool = False, placements: int = 0) -> int:
    """Transformer forward passes one transfer runs under `config` (with the source motion cached or
    not, and with this many Subject Placement steps, each one more velocity)."""
    per_velocity = 2 if config.guidance_scale > 1.0 else 1
    guided = config.guided_step_count
    per_source = 0 if source_cached else source_passes_per_step(config)
    per_guided_step = per_source + guided_velocity_evaluations(config) * per_velocity
    unguided = config.num_inference_steps - guided
    return guided * per_guided_step + unguided * per_velocity + placements * per_velocity


def _working_plan(
    model: VideoModel, frames: np.ndarray, max_area, num_frames=None, height=None, width=None
) -> ShapePlan:
    """The shape `model` works `frames` at: the asked frame count and size, or the shot's within `max_area`."""
    return plan_shape(
        frames.shape[0],
        frames.shape[1],
        frames.shape[2],
        num_frames=num_frames,
        height=height,
        width=width,
        spatial_multiple=model.spatial_multiple,
        temporal_multiple=model.temporal_multiple,
        max_area=max_area,
    )


def _source_tensor(frames: np.ndarray, plan: ShapePlan) -> torch.Tensor:
    """uint8 frames -> (1, 3, F, H, W) in [-1, 1] at the model's shape."""
    video = torch.from_numpy(to_unit_float(frames)).permute(0, 3, 1, 2)
    video = resample(video, plan.model_frames, plan.model_height, plan.model_width)
    return (video * 2.0 - 1.0).permute(1, 0, 2, 3).unsqueeze(0)


def _subject_tensor(mask, frames: np.ndarray, plan: ShapePlan) -> torch.Tensor:
    """A subject mask video (any form `as_frames` takes: white where the shot's subjects are) ->
    (1, 1, F, H, W) in [0, 1] at the model's shape; a (F, H, W) array (bool, uint8 or float in [0, 1])
    is a mask too. It must match the source frame for frame."""
    if isinstance(mask, np.ndarray) and mask.ndim == 3:
        mask = np.repeat(to_uint8(mask.astype(np.float32) if mask.dtype == bool else mask)[..., None], 3, axis=3)
    masks = as_frames(mask)
    if masks.shape[:3] != frames.shape[:3]:
        raise FlowMotionError(
            f"the subject mask has {masks.shape[0]} frames of {masks.shape[2]}x{masks.shape[1]} but the source has "
            f"{frames.shape[0]} frames of {frames.shape[2]}x{frames.shape[1]}: render them from the same shot"
        )
    if not masks.any():
        raise FlowMotionError(
            "the subject mask is black in every frame, so it places no subject: send none, or "
            "render the subjects where the camera sees them"
        )
    coverage = torch.from_numpy(to_unit_float(masks.max(axis=3, keepdims=True))).permute(0, 3, 1, 2)
    coverage = resample(coverage, plan.model_frames, plan.model_height, plan.model_width)
    return coverage.permute(1, 0, 2, 3).unsqueeze(0).clamp(0, 1)


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
    """One transfer's state: the model, its settings, the schedule and the progress clock."""

    def __init__(
        self,
        model: VideoModel,
        config: FlowMotionConfig,
        clock: PhaseClock,
        batched: bool = False,
        on_step: StepHook | None = None,
        placement: torch.Tensor | None = None,
        camera_track: torch.Tensor | None = None,
    ):
        """`placement`: the subjects' coverage per latent position for Subject Placement, or None;
        `camera_track`: the shot's camera motion per latent frame for Camera Placement, or None."""
        self.model = model
        self.config = config
        self.clock = clock
        self.batched = batched
        self.on_step = on_step
        self.timesteps, self.sigmas = model.schedule(config.num_inference_steps)
        self.placement = placement
        self.camera_track = camera_track
        placing = placement is not None or camera_track is not None
        self.placement_steps = placement_steps(self.sigmas, config) if placing else []

    def source_motions(self, source_latent: torch.Tensor, source_embedding) -> list[torch.Tensor]:
        """m_src for every guided step: the source latent itself, or its one-step prediction from
        freshly noised source latents (noise from the config's source seed)."""
        config = self.config
        steps = config.guided_step_count
        if config.source_motion == "clean_latent":
            return [source_latent] * steps
        generator = torch.Generator().manual_seed(config.source_seed)
        scale = 1.0 if config.skip_identical_source_cfg else config.source_guidance_scale
        motions = []
        for i in range(steps):
            self.clock.enter("source_motion", i + 1, steps, self.model.forward_passes)
            sigma = self.sigmas[i]
            noise = randn_tensor(
                source_latent.shape, generator=generator, device=source_latent.device, dtype=source_latent.dtype
            )
            noised = guidance.noised_latent(source_latent, sigma, noise)
            velocity = self.model.guided_velocity(
                noised, self.timesteps[i], source_embedding, source_embedding, scale, batched=self.batched
            )
            motions.append(guidance.latent_prediction(noised, sigma, velocity))
        return motions

    def velocity(self, latent, timestep, embeddings: tuple[torch.Tensor, torch.Tensor]):
        return self.model.guided_velocity(
            latent, timestep, *embeddings, self.config.guidance_scale, batched=self.batched
        )

    def optimise(self, latent, initial_noise, source_motion, step: int, embeddings, subjects=None):
        """Adam on the latent towards the source motion; gradients reach only the latent. With
        `subjects` (the source's subject coverage per latent position), a second Adam at the subject
        learning rate follows Subject Alignment's gradient, taken at the same latent.

        Returns the optimised latent and the last velocity evaluated (None when no iteration ran)."""
        config = self.config
        sigma, timestep = self.sigmas[step], self.timesteps[step]
        reference = None
        if config.velocity_regularization and step > 0:
            reference = guidance.average_velocity(latent, initial_noise, sigma, self.sigmas[0])
        variable = latent.detach().clone().requires_grad_(True)
        optimizer = torch.optim.Adam([variable], lr=config.learning_rate)
        subject_optimizer = None if subjects is None else torch.optim.Adam([variable], lr=config.subject_learning_rate)
        difference_weight = config.difference_alignment_weight if config.difference_alignment else 0.0
        raw_velocity = velocity = None
        for _ in range(config.optimization_steps):
            if raw_velocity is None or not config.reuse_velocity_across_iterations:
                raw_velocity = self.velocity(variable.detach(), timestep, embeddings)
                velocity = raw_velocity
                if reference is not None:
                    velocity = guidance.regularize_velocity(
                        raw_velocity, reference, config.velocity_regularization_gamma
                    )
            assert velocity is not None  # evaluated on the first iteration
            target_motion = guidance.latent_prediction(variable, sigma, velocity)
            loss = guidance.motion_loss(source_motion, target_motion, config.latent_alignment_weight, difference_weight)
            if subject_optimizer is None:
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                continue
            subject_loss = guidance.subject_alignment_loss(subjects, target_motion)
            (variable.grad,) = torch.autograd.grad(loss, variable, retain_graph=True)
            (subject_grad,) = torch.autograd.grad(subject_loss, variable)
            optimizer.step()
            variable.grad = subject_grad
            subject_optimizer.step()
        return variable.detach(), raw_velocity

    def euler_step(self, latent, i: int, embeddings, velocity=None):
        """One Euler step; with `velocity`, that one instead of a fresh evaluation at `latent`. At a
        Subject or Camera Placement step the latent is first rebuilt around a placed clean-latent
        prediction, on the same noise, and its velocity evaluated afresh."""
        if velocity is None:
            velocity = self.velocity(latent, self.timesteps[i], embeddings)
        if i in self.placement_steps:
            sigma = self.sigmas[i]
            placed = guidance.latent_prediction(latent, sigma, velocity)
            if self.camera_track is not None:
                placed = camera.place_camera(placed, self.camera_track)
            if self.placement is not None:
                placed = guidance.place_subject(
                    placed, self.placement, first_frame=self.config.subject_placement_first_frame
                )
            latent = guidance.noised_latent(placed, sigma, guidance.noise_prediction(latent, sigma, velocity))
            velocity = self.velocity(latent, self.timesteps[i], embeddings)
        stepped = latent + (self.sigmas[i + 1] - self.sigmas[i]) * velocity
        if self.on_step is not None:
            prediction = guidance.latent_prediction(latent, self.sigmas[i], velocity)
            self.on_step(StepInfo(i, len(self.timesteps), self.sigmas[i], stepped, prediction))
        return stepped

    def run(self, initial_noise, source_motions: list[torch.Tensor], embeddings, subjects=None) -> torch.Tensor:
        """Sample from `initial_noise`, with Subject Alignment towards `subjects` (coverage per latent
        position, or None) in the guided steps."""
        total = len(self.timesteps)
        guided = len(source_motions)
        latent = initial_noise
        for i in range(guided):
            self.clock.enter("guided_step", i + 1, total, self.model.forward_passes)
            latent, velocity = self.optimise(latent, initial_noise, source_motions[i], i, embeddings, subjects)
            reused = velocity if self.config.reuse_velocity_for_euler_step else None
            latent = self.euler_step(latent, i, embeddings, reused)
        # The step cache sees only the unguided steps: the guided ones call the transformer several
        # times per step, which a cache would mistake for consecutive denoising steps.
        threshold = self.config.unguided_step_cache
        with self.model.step_cache(threshold) if threshold > 0 and guided < total else contextlib.nullcontext():
            for i in range(guided, total):
                self.clock.enter("sampling", i + 1, total, self.model.forward_passes)
                latent = self.euler_step(latent, i, embeddings)
        return latent


def _source_motion(model, sampler, clock, frames, plan, shape, config, cache, prompts) -> tuple[list, bool]:
    """The source motions of this shot, from the cache when it holds them; and whether it did."""
    if not config.guided_step_count:
        return [], False
    key = source_key(frames, model.key, shape, sampler.sigmas, config) if cache is not None else None
    if key is not None and (hit := cache.sources.get(key)) is not None:
        return hit.to(model.device).motions, True
    clock.enter("encode_source", 1, 1, model.forward_passes)
    source_latent = model.encode_video(_source_tensor(frames, plan))
    source_embedding = None
    if config.source_motion == "latent_prediction":
        source_embedding = model.encode_prompt(config.source_prompt, prompts)
    motions = sampler.source_motions(source_latent, source_embedding)
    if key is not None:
        cache.sources.put(key, SourceMotion(source_latent, motions))
    return motions, False


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
    max_area: int | None = None,
    cache: TransferCache | None = None,
    subject_mask=None,
    runtime: RuntimeOptions | None = None,
) -> FlowMotionOutput:
    """Generate a video of `prompt` that keeps the motion of `video`: `run_transfer` with a
    TransferRequest of these keywords (see TransferRequest for each)."""
    request = TransferRequest(
        video,
        prompt,
        negative_prompt=negative_prompt,
        subject_mask=subject_mask,
        num_frames=num_frames,
        height=height,
        width=width,
        max_area=max_area,
        config=config or FlowMotionConfig(),
        generator=generator,
        latents=latents,
        output_type=output_type,
        cache=cache,
        runtime=runtime,
    )
    return run_transfer(pipe, request, on_progress=on_progress, should_cancel=should_cancel)


def run_transfer(
    pipe,
    request: TransferRequest,
    *,
    on_step: StepHook | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> FlowMotionOutput:
    """Make the take `request` describes.

    `pipe` is a diffusers pipeline of a family `flowmotion.model.model_for` knows (Wan2.1, Wan2.2
    TI2V; full size or tiny). `on_step` sees every denoising step's latent and predicted clean
    latent (StepInfo; e.g. `flowmotion.preview.preview_frames` of it) and may raise TransferCancelled.
    `on_progress` reports phases; `should_cancel` is checked before every transformer forward pass.
    The plan of the run (text-encoder offload, VAE tiling, batched CFG) and its reasons are in the
    result's stats.
    """
    config = request.config or FlowMotionConfig()
    prompt, negative_prompt, output_type = request.prompt, request.negative_prompt, request.output_type
    latents = request.latents
    if output_type not in OUTPUT_TYPES:
        raise FlowMotionError(f"unknown output_type {output_type!r}; choose one of {', '.join(OUTPUT_TYPES)}")
    if not isinstance(prompt, str) or not isinstance(negative_prompt, str):
        raise FlowMotionError("prompt and negative_prompt must be text")
    frames = as_frames(request.video)

    def check_cancel() -> None:
        if should_cancel is not None and should_cancel():
            raise TransferCancelled("the transfer was cancelled")

    model = model_for(pipe, config.max_sequence_length, before_forward=check_cancel)
    plan = _working_plan(model, frames, request.max_area, request.num_frames, request.height, request.width)
    shape = model.latent_shape(plan.model_frames, plan.model_height, plan.model_width)
    if latents is not None and tuple(latents.shape) != shape:
        raise FlowMotionError(f"latents have shape {tuple(latents.shape)} but this shot needs {shape}")
    coverage = None
    if request.subject_mask is not None:
        coverage = model.latent_coverage(_subject_tensor(request.subject_mask, frames, plan))

    machine = plan_runtime(
        model.device,
        run_size(pipe, shape, plan.model_height, plan.model_width),
        free_memory_bytes(model.device),
        request.runtime or RuntimeOptions(),
        config.batch_guidance,
        tiling_on=bool(getattr(pipe.vae, "use_tiling", False)),
    )
    tiling_before = getattr(pipe.vae, "use_tiling", False)
    pipe.vae.use_tiling = machine.vae_tiling
    try:
        return _run(
            model,
            pipe,
            frames,
            plan,
            shape,
            config,
            machine,
            prompt,
            negative_prompt,
            request.generator,
            latents,
            output_type,
            on_progress,
            check_cancel,
            request.cache,
            coverage,
            on_step,
        )
    finally:
        pipe.vae.use_tiling = tiling_before


@torch.no_grad()
def round_trip(pipe, video, *, max_area: int | None = None) -> np.ndarray:
    """`video` through the model's VAE alone: resampled to the working shape a transfer of it would use
    (the same `max_area`), encoded, decoded, and returned at its own size as float frames in [0, 1].
    What the model can carry of a shot at best: a take cannot show motion finer than its round trip."""
    frames = as_frames(video)
    model = model_for(pipe)  # no prompt is encoded: the text length does not matter
    plan = _working_plan(model, frames, max_area)
    return _result_frames(model.decode(model.encode_video(_source_tensor(frames, plan))), plan)


def _run(
    model,
    pipe,
    frames,
    plan,
    shape,
    config,
    machine,
    prompt,
    negative_prompt,
    generator,
    latents,
    output_type,
    on_progress,
    check_cancel,
    cache,
    coverage,
    on_step=None,
) -> FlowMotionOutput:
    clock = PhaseClock(RunStats(), model.device, on_progress, forward_pass_count(config))
    clock.stats.runtime = machine.as_dict()
    check_cancel()
    clock.enter("encode_prompt", 1, 1, 0)
    prompts = cache.prompts if cache is not None else PromptCache()
    embeddings = (model.encode_prompt(prompt, prompts), model.encode_prompt(negative_prompt, prompts))
    if config.guided_step_count and config.source_motion == "latent_prediction":
        model.encode_prompt(config.source_prompt, prompts)
    if machine.offload_text_encoder:
        # Every prompt of this run is encoded: the text encoder's device memory is the run's to use.
        offload_text_encoder(pipe)
    placement = coverage if config.subject_placements else None
    track = None
    if config.camera_placement and config.subject_placements and config.motion_guidance and coverage is None:
        track = camera.camera_track(frames, plan.model_frames, model.temporal_factor)
    sampler = Sampler(
        model, config, clock, batched=machine.batch_guidance, on_step=on_step, placement=placement, camera_track=track
    )
    placements = len(sampler.placement_steps)
    clock.stats.subject_placements = placements if placement is not None else 0
    clock.stats.camera_placements = placements if track is not None else 0
    clock.planned_passes = forward_pass_count(config, placements=placements)
    source_motions, cached = _source_motion(model, sampler, clock, frames, plan, shape, config, cache, prompts)
    if cached:
        clock.planned_passes = forward_pass_count(config, source_cached=True, placements=placements)
    clock.stats.source_cache_hit = cached
    check_cancel()

    if latents is None:
        initial_noise = randn_tensor(shape, generator=generator, device=model.device, dtype=torch.float32)
    else:
        initial_noise = latents.to(model.device, torch.float32)
    subjects = coverage if config.subject_alignment else None
    latent = sampler.run(initial_noise, source_motions, embeddings, subjects)

    if output_type == "latent":
        return FlowMotionOutput(latent, clock.finish(model.forward_passes, model.transformer_calls), plan)
    check_cancel()
    clock.enter("decode", 1, 1, model.forward_passes)
    result = _result_frames(model.decode(latent), plan)
    stats = clock.finish(model.forward_passes, model.transformer_calls)
    return FlowMotionOutput(_to_output_type(result, output_type), stats, plan)
