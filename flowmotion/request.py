"""What one transfer is asked to make, and what its step hook sees."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch

from .config import FlowMotionConfig
from .runtime import RuntimeOptions

OUTPUT_TYPES = ("np", "pil", "latent")


@dataclass
class TransferRequest:
    """One take: the shot to follow, what to show, at what shape, and with which settings.

    `video` is a path, an array or a list of images (see `flowmotion.video.as_frames`). The result
    has `num_frames` x `height` x `width` (by default the source's); the model works at the nearest
    legal shape, at most `max_area` pixels a frame when given (see `flowmotion.video.plan_shape`).
    """

    video: object
    prompt: str
    negative_prompt: str = ""
    subject_mask: object = None
    """Same frames and size as `video`, white where the shot's subjects are (e.g. a render of their
    silhouettes): adds Subject Alignment to the guided steps (see FlowMotionConfig)."""
    num_frames: int | None = None
    height: int | None = None
    width: int | None = None
    max_area: int | None = None
    config: FlowMotionConfig = field(default_factory=FlowMotionConfig)
    generator: torch.Generator | None = None
    latents: torch.Tensor | None = None
    """The initial noise at the model's latent shape; without it, noise is drawn from `generator`."""
    output_type: str = "np"
    """'np' (float frames in [0, 1]), 'pil' or 'latent' (see FlowMotionOutput)."""
    cache: object = None
    """A TransferCache kept by a long-lived caller: reuses prompt embeddings and the shot's source motion."""
    runtime: RuntimeOptions | None = None
    """Overrides the run's plan (text-encoder offload, VAE tiling), which otherwise follows free memory."""

    def replace(self, **changes) -> TransferRequest:
        return replace(self, **changes)


@dataclass(frozen=True)
class StepInfo:
    """What the step hook sees at the end of each denoising step (diffusers' callback_on_step_end).

    Tensors are the sampler's own, normalised latents (1, channels, latent frames, height, width):
    read them, do not change them in place.
    """

    step: int
    """The step just taken, 0-based."""
    total: int
    """Denoising steps of the run (num_inference_steps)."""
    sigma: float
    """The noise level the step started from (the scheduler's timestep / 1000)."""
    latent: torch.Tensor
    """The latent after the step."""
    latent_prediction: torch.Tensor
    """The predicted clean latent: x0 = latent before the step - sigma * velocity; after the last step
    it is the final latent."""


StepHook = Callable[[StepInfo], None]
"""Called once per denoising step, in the sampler's thread; raise TransferCancelled to stop the run."""
