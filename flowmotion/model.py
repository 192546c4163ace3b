"""What the sampler needs from a video model, and the factory that picks the adapter for a pipeline.

The sampler (flowmotion.transfer) knows flow matching, not model families: it asks a `VideoModel`
for the schedule, prompt and video encodings, guided velocities and the decoding, and for the shapes
the model accepts. An adapter wraps one family's diffusers pipeline behind this interface;
`model_for` picks it from the pipeline. Adding a family is one adapter and one line in `ADAPTERS`.

The sampler steps on the scheduler's timesteps divided by its training steps (1000), then 0, as the
authors' release does: whatever scheduler the pipeline carries (UniPC for Wan, flow-matching Euler),
only its timesteps are used, never its `step`.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Protocol, runtime_checkable

import torch

from .errors import FlowMotionError


@runtime_checkable
class VideoModel(Protocol):
    """A flow-matching text-to-video model as the FlowMotion sampler uses it.

    Latents are normalised, laid out (1, channels, latent frames, latent height, latent width); the
    model predicts the velocity v ~ noise - clean latent.
    """

    name: str
    """The family or variant, for messages ('Wan2.1', 'Wan2.2 TI2V')."""
    forward_passes: int
    """Transformer forward passes run so far (a batch of two counts two)."""
    transformer_calls: int
    """Calls into the transformer so far (a batch of two counts one)."""
    before_forward: Callable[[], None] | None
    """Called before every transformer call: the caller's cancellation check."""

    @property
    def key(self) -> str:
        """Identifies the model's weights and layout in caches."""
        ...

    @property
    def device(self) -> torch.device: ...

    @property
    def spatial_multiple(self) -> int:
        """Legal heights and widths are multiples of this."""
        ...

    @property
    def temporal_multiple(self) -> int:
        """Legal frame counts are 1 + k * this."""
        ...

    @property
    def temporal_factor(self) -> int:
        """Video frames per latent frame after the first, which the VAE encodes alone."""
        ...

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, ...]:
        """The latent of a legal (frames, height, width) video."""
        ...

    def latent_coverage(self, mask: torch.Tensor) -> torch.Tensor:
        """A mask video (1, 1, F, H, W) in [0, 1] -> its coverage of each latent position."""
        ...

    def schedule(self, num_steps: int) -> tuple[torch.Tensor, list[float]]:
        """The scheduler's timesteps and the sigmas stepped on: timesteps / training steps, then 0."""
        ...

    def encode_prompt(self, text: str, cache=None) -> torch.Tensor:
        """The prompt's embedding, from `cache` (a PromptCache) when it holds it."""
        ...

    def encode_video(self, video: torch.Tensor) -> torch.Tensor:
        """Video (1, 3, F, H, W) in [-1, 1] -> normalised latent."""
        ...

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Normalised latent -> video (1, 3, F, H, W) in [-1, 1]."""
        ...

    def step_cache(self, threshold: float) -> AbstractContextManager:
        """A block inside which consecutive transformer calls may reuse each other's work."""
        ...

    def guided_velocity(
        self,
        latent: torch.Tensor,
        timestep: torch.Tensor,
        embedding: torch.Tensor,
        negative_embedding: torch.Tensor,
        scale: float,
        batched: bool = False,
    ) -> torch.Tensor:
        """The velocity under classifier-free guidance at `scale` (one pass when scale <= 1)."""
        ...


def _adapters():
    from .wan import Wan22Model, WanModel

    # Most specific first: the first adapter whose `accepts` says yes wraps the pipeline.
    return (Wan22Model, WanModel)


def adapter_names() -> list[str]:
    return [adapter.name for adapter in _adapters()]


def model_for(pipe, max_sequence_length: int = 512, before_forward: Callable[[], None] | None = None) -> VideoModel:
    """The adapter for `pipe`; FlowMotionError naming the pipeline when no adapter takes it."""
    for adapter in _adapters():
        problem = adapter.refusal(pipe)
        if problem is None:
            return adapter(pipe, max_sequence_length, before_forward=before_forward)
        if problem:
            raise FlowMotionError(problem)
    raise FlowMotionError(
        f"FlowMotion has no adapter for a {type(pipe).__name__}; it runs {', '.join(adapter_names())} "
        "text-to-video pipelines"
    )
