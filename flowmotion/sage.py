"""SageAttention's 8-bit attention (the `sageattention` 1.x wheel, Triton kernels) for the transformer's
self-attention.

diffusers' own 'sage' backend wants sageattention 2.1 or later, which PyPI does not carry as a wheel;
1.x is a plain wheel that runs on any CUDA GPU Triton supports. Self-attention over the video tokens
is most of a pass's attention; the cross-attention to the 512 text tokens keeps PyTorch's kernel.
"""

from __future__ import annotations

import torch

MARK = "flowmotion_sage8"
"""The attention backend name the marked processors carry; only the wrapper below understands it."""
_ROUTING: set = set()
"""The wrappers this module made: diffusers' dispatch is wrapped once, however many transformers run."""


def unavailable(device: torch.device) -> str | None:
    """Why SageAttention cannot run on `device`, or None when it can."""
    if device.type != "cuda":
        return f"it needs a CUDA GPU, this run is on {device.type}"
    if torch.cuda.get_device_capability(device) < (8, 0):
        return f"{torch.cuda.get_device_name(device)} is older than Ampere"
    try:
        import sageattention  # noqa: F401
    except ImportError:
        return "sageattention is not installed (pip install sageattention)"
    return None


def install(transformer) -> None:
    """Route the self-attention of every block through SageAttention."""
    from diffusers.models.transformers import transformer_wan

    if transformer_wan.dispatch_attention_fn not in _ROUTING:
        transformer_wan.dispatch_attention_fn = _routing(transformer_wan.dispatch_attention_fn)
    for block in transformer.blocks:
        block.attn1.processor._attention_backend = MARK


def _routing(dispatch):
    from sageattention import sageattn

    def dispatch_attention_fn(
        query,
        key,
        value,
        attn_mask=None,
        dropout_p=0.0,
        is_causal=False,
        scale=None,
        enable_gqa=False,
        backend=None,
        **kwargs,
    ):
        if backend == MARK and attn_mask is None and dropout_p == 0.0:
            # diffusers lays attention out as (batch, tokens, heads, head dim): SageAttention's "NHD".
            return sageattn(query, key, value, tensor_layout="NHD", is_causal=is_causal, sm_scale=scale)
        if backend == MARK:
            backend = None
        return dispatch(
            query,
            key,
            value,
            attn_mask=attn_mask,
            dropout_p=dropout_p,
            is_causal=is_causal,
            scale=scale,
            enable_gqa=enable_gqa,
            backend=backend,
            **kwargs,
        )

    _ROUTING.add(dispatch_attention_fn)
    return dispatch_attention_fn
