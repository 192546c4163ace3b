"""How a loaded pipeline runs on its device: attention kernels, FP8, compilation, VAE tiling, offload,
batched CFG.

None of these change the method. Some are chosen once, when the pipeline is loaded
(`apply_runtime_options`); the memory savers and batched CFG are chosen for each run by
`plan_runtime`, from the device, its free memory and the run's size, unless the caller decides.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import torch

from .errors import FlowMotionError


@dataclass(frozen=True)
class RuntimeOptions:
    """Execution settings of a loaded pipeline. None leaves the choice to the run's plan."""

    attention_backend: str | None = None
    """diffusers attention backend for the transformer ('flash', '_native_cudnn', ...), or 'sage8' for
    SageAttention's 8-bit kernel from the `sageattention` wheel (None: PyTorch SDPA). A backend this
    machine cannot run falls back to SDPA with a note."""

    fp8_linear: bool = False
    """Run the transformer blocks' linear layers in FP8 (torchao, dynamic per-row scales); needs a GPU
    with FP8 tensor cores (Ada or Hopper) and torchao, else a note and bf16."""

    compile_blocks: bool = False
    """Compile the transformer's repeated block once with torch.compile (regional compilation; CUDA only)."""

    vae_tiling: bool | None = None
    """Encode and decode the video in overlapping tiles, avoiding the VAE's memory spike at full size
    (None: where free memory asks for it)."""

    offload_text_encoder: bool | None = None
    """Keep the text encoder in host memory and stream its layers to the device one at a time while a
    prompt is encoded (None: where free memory asks for it, after the run's prompts are encoded)."""


@dataclass
class RuntimePlan:
    """What one run does on its machine, and why."""

    offload_text_encoder: bool
    vae_tiling: bool
    batch_guidance: bool
    reasons: dict[str, str] = field(default_factory=dict)

    def lines(self) -> list[str]:
        names = {
            "offload_text_encoder": "text encoder offload",
            "vae_tiling": "VAE tiling",
            "batch_guidance": "batched CFG",
        }
        return [
            f"{label}: {'on' if getattr(self, key) else 'off'} ({self.reasons[key]})" for key, label in names.items()
        ]

    def as_dict(self) -> dict[str, str]:
        return {
            key: f"{'on' if getattr(self, key) else 'off'}: {self.reasons[key]}"
            for key in ("offload_text_encoder", "vae_tiling", "batch_guidance")
        }


# Memory a run needs beyond the weights, from one H100 run of Wan2.1-T2V-1.3B at 720x480x49 (random
# weights, bf16): 5.1 GiB peak with the text encoder off the GPU and the VAE tiled (weights 3.1 GiB),
# 21.2 GiB with both on the GPU (text encoder 10.6 GiB). A transformer pass holds about 40 bytes per
# token and model channel (the feed-forward's widening dominates); the untiled VAE about 24 KiB per
# pixel of a frame (it decodes a few frames at a time at full width), the tiled one a fixed ~1.5 GiB.
ACTIVATION_BYTES_PER_TOKEN_CHANNEL = 40
UNTILED_VAE_BYTES_PER_PIXEL = 24 * 2**10
TILED_VAE_BYTES = int(1.5 * 2**30)
HEADROOM_BYTES = 2**30
"""Kept free for the allocator's fragmentation and the odd temporary."""

BATCH_TOKEN_LIMIT = {"cpu": 512, "cuda": 4096}
"""Tokens per pass below which batching CFG's two passes pays: a pass this small leaves the device
idle between kernels, so one call of two beats two calls of one. Above it a pass is compute-bound and
batching gains nothing. CPU, embedded model, one thread (bench/speed.py, RESULTS.md): 30% faster at
144 tokens, 9% slower at 864. CUDA: no faster at 17,550 tokens on one H100; the limit below which it
pays there is an estimate, not yet measured."""


@dataclass(frozen=True)
class RunSize:
    """What the plan needs to know about one run."""

    tokens: int
    """Transformer tokens per pass (latent frames x latent positions / patch)."""
    channels: int
    """The transformer's model width."""
    pixels: int
    """Pixels per frame at the model's working size."""
    text_encoder_bytes: int
    """Bytes the text encoder holds on the device (0 when it is already in host memory)."""


def run_size(pipe, latent_shape: tuple[int, ...], height: int, width: int) -> RunSize:
    config = pipe.transformer.config
    patch = config.patch_size
    frames, rows, columns = latent_shape[2:]
    tokens = (frames // patch[0]) * (rows // patch[1]) * (columns // patch[2])
    return RunSize(
        tokens,
        config.num_attention_heads * config.attention_head_dim,
        height * width,
        _resident_bytes(pipe.text_encoder, pipe._execution_device),
    )


def _resident_bytes(module, device: torch.device) -> int:
    if _is_offloaded(module):
        return 0
    return sum(p.numel() * p.element_size() for p in module.parameters() if p.device.type == device.type)


def _is_offloaded(module) -> bool:
    return getattr(module, "_hf_hook", None) is not None


def free_memory_bytes(device: torch.device) -> int | None:
    """Memory a run can still take on `device`: free device memory plus what torch holds unused;
    on the CPU the host's available memory; None where it cannot be told."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def run_bytes(size: RunSize, batched: bool, tiled: bool) -> int:
    activations = size.tokens * size.channels * ACTIVATION_BYTES_PER_TOKEN_CHANNEL * (2 if batched else 1)
    vae = TILED_VAE_BYTES if tiled else size.pixels * UNTILED_VAE_BYTES_PER_PIXEL
    return max(activations, vae) + HEADROOM_BYTES


def _gib(count: int) -> str:
    return f"{count / 2**30:.1f} GiB"


def plan_runtime(
    device: torch.device,
    size: RunSize,
    free: int | None,
    options: RuntimeOptions,
    batch_guidance: bool | None,
    tiling_on: bool = False,
) -> RuntimePlan:
    """Choose batched CFG, text-encoder offload and VAE tiling for one run.

    Batching where a pass is too small to fill the device; then, only where the free memory does not
    cover the run: first the text encoder leaves the device (it is idle once the prompts are encoded),
    then the VAE is tiled. `batch_guidance` and the options' settings, when not None, are obeyed;
    `tiling_on` says the caller already turned tiling on.
    """
    reasons: dict[str, str] = {}
    limit = BATCH_TOKEN_LIMIT.get(device.type, BATCH_TOKEN_LIMIT["cuda"])
    if batch_guidance is not None:
        batch, reasons["batch_guidance"] = batch_guidance, "set by the config"
    else:
        batch = size.tokens < limit
        relation = "under" if batch else "at or over"
        reasons["batch_guidance"] = f"{size.tokens} tokens a pass, {relation} {limit} on {device.type}"

    need = run_bytes(size, batch, tiled=False)
    wanted = "" if free is None else f"{_gib(free)} free, the run needs about {_gib(need)}"
    offload = options.offload_text_encoder
    if offload is not None:
        reasons["offload_text_encoder"] = "set by the runtime options"
    elif device.type != "cuda":
        offload, reasons["offload_text_encoder"] = False, "the text encoder is in host memory already"
    elif size.text_encoder_bytes == 0:
        offload, reasons["offload_text_encoder"] = True, "streamed from host memory already"
    else:
        offload = free is not None and free < need
        reasons["offload_text_encoder"] = wanted if free is not None else "free memory unknown"
    freed = size.text_encoder_bytes if offload else 0

    tiling = options.vae_tiling
    if tiling is not None:
        reasons["vae_tiling"] = "set by the runtime options"
    elif tiling_on:
        tiling, reasons["vae_tiling"] = True, "turned on on the pipeline"
    elif free is None:
        tiling, reasons["vae_tiling"] = False, "free memory unknown"
    else:
        tiling = free + freed < need
        reasons["vae_tiling"] = wanted + (f", {_gib(freed)} more with the text encoder off" if freed else "")
    return RuntimePlan(bool(offload), bool(tiling), bool(batch), reasons)


def offload_text_encoder(pipe) -> None:
    """Move the text encoder to host memory; its layers are streamed to the device while it encodes."""
    device = pipe._execution_device
    if device.type != "cuda" or _is_offloaded(pipe.text_encoder):
        return
    from accelerate import cpu_offload

    pipe.text_encoder.to("cpu")
    cpu_offload(pipe.text_encoder, execution_device=device)
    torch.cuda.empty_cache()


def note(message: str) -> None:
    """A one-line note about a runtime option this machine cannot honour."""
    print(f"flowmotion: {message}", file=sys.stderr)


def apply_runtime_options(pipe, options: RuntimeOptions) -> list[str]:
    """Apply the load-time parts of `options` to `pipe` in place. What this machine cannot do falls back
    to the plain path with a note (printed, and returned); only an unknown name is an error."""
    notes: list[str] = []
    device = pipe._execution_device
    if options.attention_backend:
        notes += _set_attention(pipe, options.attention_backend)
    if options.fp8_linear:
        notes += _fp8_linear(pipe, device)
    if options.vae_tiling:
        pipe.vae.enable_tiling()
    if options.offload_text_encoder:
        offload_text_encoder(pipe)
    if options.compile_blocks:
        if device.type == "cuda":
            # Compilation happens at the first pass, inside a run: a graph it cannot compile runs eagerly
            # (with torch's own warning) instead of failing the take.
            torch._dynamo.config.suppress_errors = True
            pipe.transformer.compile_repeated_blocks(fullgraph=True)
        else:
            notes.append(f"compilation is for CUDA; the transformer runs uncompiled on {device.type}")
    for message in notes:
        note(message)
    return notes


SAGE8 = "sage8"


def _set_attention(pipe, name: str) -> list[str]:
    from diffusers.models.attention_dispatch import AttentionBackendName

    if name == SAGE8:
        from . import sage

        problem = sage.unavailable(pipe._execution_device)
        if problem:
            return [f"attention 'sage8' falls back to PyTorch SDPA: {problem}"]
        sage.install(pipe.transformer)
        return []
    if name not in {backend.value for backend in AttentionBackendName}:
        known = ", ".join(sorted([SAGE8] + [b.value for b in AttentionBackendName if not b.value.startswith("_")]))
        raise FlowMotionError(f"attention backend {name!r} cannot be used here: it is not one of {known}")
    try:
        pipe.transformer.set_attention_backend(name)
    except (ValueError, RuntimeError, ImportError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return [f"attention {name!r} falls back to PyTorch SDPA: {first_line}"]
    return []


def fp8_unavailable(device: torch.device) -> str | None:
    """Why FP8 linear layers cannot run on `device`, or None when they can."""
    if device.type != "cuda":
        return f"FP8 matrix products need a CUDA GPU, this run is on {device.type}"
    if torch.cuda.get_device_capability(device) < (8, 9):
        return f"{torch.cuda.get_device_name(device)} has no FP8 tensor cores (Ada or Hopper needed)"
    try:
        import torchao  # noqa: F401
    except ImportError:
        return "torchao is not installed (pip install torchao)"
    return None


def _fp8_linear(pipe, device: torch.device) -> list[str]:
    problem = fp8_unavailable(device)
    if problem:
        return [f"FP8 linear layers off, bf16 kept: {problem}"]
    try:
        from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, PerRow, quantize_
    except ImportError as error:  # a torchao built for another torch
        return [f"FP8 linear layers off, bf16 kept: torchao does not load here ({error})"]
    # Only the repeated blocks: the embeddings and the output head are small and precision-sensitive.
    quantize_(pipe.transformer.blocks, Float8DynamicActivationFloat8WeightConfig(granularity=PerRow()))
    return []
