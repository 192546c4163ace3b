"""How a loaded pipeline runs on its device: attention kernels, compilation, VAE tiling, offload.

None of these change the method; they trade start-up time or host memory for speed and VRAM.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import FlowMotionError


@dataclass(frozen=True)
class RuntimeOptions:
    """Execution settings of a loaded pipeline."""

    attention_backend: str | None = None
    """diffusers attention backend for the transformer ('flash', '_native_cudnn', 'sage', ...; None: PyTorch SDPA)."""

    compile_blocks: bool = False
    """Compile the transformer's repeated block once with torch.compile (regional compilation)."""

    vae_tiling: bool = False
    """Decode (and encode) the video in overlapping tiles, avoiding the VAE's memory spike at full size."""

    offload_text_encoder: bool = False
    """Keep the text encoder in host memory and stream its layers to the device one at a time while a
    prompt is encoded; with the prompt cache, the device never holds the whole umT5-XXL."""


def apply_runtime_options(pipe, options: RuntimeOptions):
    """Apply `options` to `pipe` in place; returns the pipe."""
    device = pipe._execution_device
    if options.attention_backend:
        try:
            pipe.transformer.set_attention_backend(options.attention_backend)
        except (ValueError, RuntimeError, ImportError) as error:
            raise FlowMotionError(f"attention backend {options.attention_backend!r} cannot be used here: {error}") from None
    if options.vae_tiling:
        pipe.vae.enable_tiling()
    if options.offload_text_encoder and device.type == "cuda":
        from accelerate import cpu_offload

        pipe.text_encoder.to("cpu")
        cpu_offload(pipe.text_encoder, execution_device=device)
        torch.cuda.empty_cache()
    if options.compile_blocks:
        pipe.transformer.compile_repeated_blocks(fullgraph=True)
    return pipe
