"""The Wan adapters of `flowmotion.model.VideoModel`: Wan2.1 text-to-video, and Wan2.2's TI2V-5B layout.

encode video -> normalised latent, encode prompt -> embedding, velocity(z, step, embedding),
decode latent -> video. Everything else in the library is model-agnostic.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable

import torch

from .errors import FlowMotionError

VAE_CHUNK_FRAMES = 4
"""AutoencoderKLWan encodes a video as its first frame, then chunks of 4 frames, and drops a shorter
tail: a frame count it encodes whole is 1 + 4k, whatever its temporal factor."""


class WanModel:
    """Wraps a Wan2.1 WanPipeline (tiny or full size) and counts its transformer forward passes."""

    name = "Wan2.1"

    @classmethod
    def refusal(cls, pipe) -> str | None:
        """None when this adapter runs `pipe`; a reason when `pipe` is of its family but cannot run;
        '' when it is of another family."""
        from diffusers import WanPipeline

        if not isinstance(pipe, WanPipeline):
            return ""
        if pipe.config.get("boundary_ratio") is not None or getattr(pipe, "transformer_2", None) is not None:
            return (
                "this is a two-expert Wan2.2 pipeline (A14B); FlowMotion runs Wan2.1 and Wan2.2's "
                "TI2V-5B, one transformer each"
            )
        return None if not pipe.config.get("expand_timesteps", False) else ""

    def __init__(self, pipe, max_sequence_length: int = 512, before_forward: Callable[[], None] | None = None):
        for part in ("transformer", "vae", "text_encoder", "tokenizer", "scheduler"):
            if getattr(pipe, part, None) is None:
                raise FlowMotionError(
                    f"the pipeline has no {part}; FlowMotion needs a complete Wan text-to-video pipeline"
                )
        self.pipe = pipe
        self.transformer = pipe.transformer
        self.vae = pipe.vae
        self.max_sequence_length = max_sequence_length
        self.before_forward = before_forward
        self.forward_passes = 0
        self.transformer_calls = 0
        self._key: str | None = None
        self.step_cache_on = False

    @property
    def key(self) -> str:
        """Identifies the model in caches."""
        if self._key is None:
            from .cache import model_key

            self._key = model_key(self.pipe)
        return self._key

    @property
    def device(self) -> torch.device:
        return self.pipe._execution_device

    @property
    def spatial_multiple(self) -> int:
        return self.pipe.vae_scale_factor_spatial * self.transformer.config.patch_size[1]

    @property
    def temporal_multiple(self) -> int:
        """Legal frame counts are 1 + k * this: whole VAE chunks of whole latent frames."""
        return math.lcm(VAE_CHUNK_FRAMES, self.pipe.vae_scale_factor_temporal)

    @property
    def temporal_factor(self) -> int:
        return self.pipe.vae_scale_factor_temporal

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, ...]:
        return (
            1,
            self.transformer.config.in_channels,
            (frames - 1) // self.pipe.vae_scale_factor_temporal + 1,
            height // self.pipe.vae_scale_factor_spatial,
            width // self.pipe.vae_scale_factor_spatial,
        )

    def latent_coverage(self, mask: torch.Tensor) -> torch.Tensor:
        """A mask video (1, 1, F, H, W) in [0, 1] -> how much of each latent position it covers,
        (1, 1, latent frames, latent height, latent width): a latent frame holds the first frame
        alone, then `vae_scale_factor_temporal` frames each (the union over them); a latent position,
        `vae_scale_factor_spatial` squared pixels (their mean)."""
        factor = self.pipe.vae_scale_factor_temporal
        frames = mask.shape[2]
        if (frames - 1) % factor:
            raise FlowMotionError(f"a mask of {frames} frames does not fill whole latent frames of {factor}")
        first = mask[:, :, :1]
        rest = mask[:, :, 1:].unflatten(2, ((frames - 1) // factor, factor)).amax(dim=3)
        grouped = torch.cat([first, rest], dim=2)
        size = self.pipe.vae_scale_factor_spatial
        return torch.nn.functional.avg_pool3d(grouped, kernel_size=(1, size, size)).to(self.device, torch.float32)

    def schedule(self, num_steps: int) -> tuple[torch.Tensor, list[float]]:
        """The scheduler's timesteps and the sigmas the Euler sampler uses (timesteps / 1000, then 0)."""
        scheduler = self.pipe.scheduler
        scheduler.set_timesteps(num_steps, device=self.device)
        timesteps = scheduler.timesteps
        train_steps = scheduler.config.num_train_timesteps
        sigmas = [float(t) / train_steps for t in timesteps.tolist()] + [0.0]
        return timesteps, sigmas

    @torch.no_grad()
    def encode_prompt(self, text: str, cache=None) -> torch.Tensor:
        """The prompt's embedding, from `cache` (a PromptCache keyed by model and text) when it holds it."""
        key = (self.key, text, self.max_sequence_length)
        if cache is not None and (hit := cache.get(key)) is not None:
            return hit
        embedding, _ = self.pipe.encode_prompt(
            prompt=text,
            do_classifier_free_guidance=False,
            max_sequence_length=self.max_sequence_length,
            device=self.device,
        )
        embedding = embedding.to(self.transformer.dtype)
        if cache is not None:
            cache.put(key, embedding)
        return embedding

    def _latent_stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (1, self.vae.config.z_dim, 1, 1, 1)
        mean = torch.tensor(self.vae.config.latents_mean).view(shape).to(like.device, like.dtype)
        std = torch.tensor(self.vae.config.latents_std).view(shape).to(like.device, like.dtype)
        return mean, std

    @torch.no_grad()
    def encode_video(self, video: torch.Tensor) -> torch.Tensor:
        """Video (1, 3, F, H, W) in [-1, 1] -> normalised latent, from the posterior's mean."""
        video = video.to(self.device, self.vae.dtype)
        raw = self.vae.encode(video).latent_dist.mean
        mean, std = self._latent_stats(raw)
        return ((raw - mean) / std).float()

    @torch.no_grad()
    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Normalised latent -> video (1, 3, F, H, W) in [-1, 1], denormalised as WanPipeline does."""
        latent = latent.to(self.device, self.vae.dtype)
        mean, std = self._latent_stats(latent)
        # WanPipeline divides by 1/std; the same arithmetic keeps the result bit-identical to it.
        return self.vae.decode(latent / (1.0 / std) + mean, return_dict=False)[0]

    @contextlib.contextmanager
    def step_cache(self, threshold: float):
        """diffusers' first-block cache on the transformer for the calls made inside this block only."""
        from diffusers import FirstBlockCacheConfig

        self.transformer.enable_cache(FirstBlockCacheConfig(threshold=threshold))
        self.step_cache_on = True
        try:
            yield
        finally:
            self.step_cache_on = False
            self.transformer.disable_cache()

    @torch.no_grad()
    def velocity(
        self, latent: torch.Tensor, timestep: torch.Tensor, embedding: torch.Tensor, stream: str = "cond"
    ) -> torch.Tensor:
        """Transformer forward passes, one per batch entry; the predicted velocity in float32.

        `stream` names the sequence of calls this one continues ('cond', 'uncond', 'batch'): a step
        cache compares each call with the previous call of the same stream.
        """
        if self.before_forward is not None:
            self.before_forward()
        self.forward_passes += latent.shape[0]
        self.transformer_calls += 1
        context = self.transformer.cache_context(stream) if self.step_cache_on else contextlib.nullcontext()
        with context:
            output = self.transformer(
                hidden_states=latent.to(self.transformer.dtype),
                timestep=self.timestep_input(timestep, latent),
                encoder_hidden_states=embedding,
                return_dict=False,
            )[0]
        return output.float()

    def timestep_input(self, timestep: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        """The transformer's timestep argument: one per batch entry."""
        return timestep.expand(latent.shape[0])

    def guided_velocity(
        self,
        latent: torch.Tensor,
        timestep: torch.Tensor,
        embedding: torch.Tensor,
        negative_embedding: torch.Tensor,
        scale: float,
        batched: bool = False,
    ) -> torch.Tensor:
        """Velocity under classifier-free guidance; a scale of 1 or less runs one conditional pass.

        `batched` runs the conditional and unconditional passes as one batch of two.
        """
        from .guidance import classifier_free_guidance

        if scale <= 1.0:
            return self.velocity(latent, timestep, embedding)
        if batched:
            both = self.velocity(
                torch.cat([latent, latent]), timestep, torch.cat([embedding, negative_embedding]), "batch"
            )
            cond, uncond = both.chunk(2)
        else:
            cond = self.velocity(latent, timestep, embedding, "cond")
            uncond = self.velocity(latent, timestep, negative_embedding, "uncond")
        return classifier_free_guidance(cond, uncond, scale)


class Wan22Model(WanModel):
    """Wraps a Wan2.2 TI2V-5B WanPipeline (`expand_timesteps`): a 48-channel VAE that compresses 16x
    spatially (a 2x2 patch inside it), and a transformer that takes a timestep per token."""

    name = "Wan2.2 TI2V"

    @classmethod
    def refusal(cls, pipe) -> str | None:
        from diffusers import WanPipeline

        if not isinstance(pipe, WanPipeline) or not pipe.config.get("expand_timesteps", False):
            return ""
        return None

    def timestep_input(self, timestep: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        """One timestep per token, (batch, tokens), as WanPipeline passes it with `expand_timesteps`
        (every token at the step's timestep: text-to-video has no conditioning frame)."""
        patch = self.transformer.config.patch_size
        frames, rows, columns = latent.shape[2:]
        tokens = (frames // patch[0]) * (rows // patch[1]) * (columns // patch[2])
        return timestep.reshape(1, 1).expand(latent.shape[0], tokens)
