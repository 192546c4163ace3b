"""What a running transfer reports, and what a finished one measured."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

import torch

PHASES = ("encode_prompt", "encode_source", "source_motion", "guided_step", "sampling", "decode")


@dataclass(frozen=True)
class Progress:
    """One progress report: the phase, the step within it, and the time so far."""

    phase: str
    """One of PHASES: 'encode_prompt', 'encode_source', 'source_motion', 'guided_step', 'sampling', 'decode'."""
    step: int
    """Step about to run within the phase's count (1-based; denoising steps for guided_step and sampling)."""
    total: int
    """Steps of the phase's count (denoising steps for guided_step and sampling; 1 for encode and decode)."""
    elapsed: float
    """Seconds since the transfer started."""
    forward_passes: int
    """Transformer forward passes run so far."""
    planned_forward_passes: int
    """Transformer forward passes the whole transfer will run."""

    @property
    def eta_seconds(self) -> float | None:
        """Seconds left, extrapolated from the forward passes run so far; None before the first."""
        if self.forward_passes == 0:
            return None
        remaining = max(0, self.planned_forward_passes - self.forward_passes)
        return self.elapsed / self.forward_passes * remaining


@dataclass
class RunStats:
    """What one transfer cost."""

    forward_passes: int = 0
    transformer_calls: int = 0
    """Calls into the transformer; fewer than forward_passes when CFG runs batched."""
    source_cache_hit: bool = False
    subject_placements: int = 0
    """Subject Placement steps the run took (0 without subject masks or with placement off)."""
    camera_placements: int = 0
    """Camera Placement steps the run took (0 where the playblast's camera was read as still)."""
    seconds: float = 0.0
    phase_seconds: dict[str, float] = field(default_factory=lambda: {phase: 0.0 for phase in PHASES})
    peak_memory_bytes: int = 0
    peak_memory_kind: str = "cpu-rss"
    """'cuda-allocated' (torch.cuda.max_memory_allocated) or 'cpu-rss' (the process's peak resident set)."""
    runtime: dict[str, str] = field(default_factory=dict)
    """What the run's plan chose ('offload_text_encoder', 'vae_tiling', 'batch_guidance'), each as
    'on: why' or 'off: why' (see flowmotion.runtime.plan_runtime)."""

    def summary(self) -> str:
        memory = f"{self.peak_memory_bytes / 2**30:.2f} GiB"
        label = "peak VRAM" if self.peak_memory_kind == "cuda-allocated" else "peak RSS"
        return f"{self.seconds:.1f} s, {self.forward_passes} forward passes, {label} {memory}"


def peak_resident_bytes() -> int:
    """The process's peak resident memory, or 0 where the platform does not say (Windows)."""
    try:
        import resource
    except ImportError:
        return 0
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


class PhaseClock:
    """Adds wall time to the phase that is running and reports progress."""

    def __init__(self, stats: RunStats, device: torch.device, on_progress=None, planned_passes: int = 0):
        self.stats = stats
        self.device = device
        self.on_progress = on_progress
        self.planned_passes = planned_passes
        self.start = time.perf_counter()
        self.mark = self.start
        self.phase: str | None = None
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)

    def enter(self, phase: str, step: int, total: int, forward_passes: int) -> None:
        self._close_phase()
        self.phase = phase
        if self.on_progress is not None:
            self.on_progress(
                Progress(phase, step, total, time.perf_counter() - self.start, forward_passes, self.planned_passes)
            )

    def _close_phase(self) -> None:
        now = time.perf_counter()
        if self.phase is not None:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
                now = time.perf_counter()
            self.stats.phase_seconds[self.phase] += now - self.mark
        self.mark = now

    def finish(self, forward_passes: int, transformer_calls: int | None = None) -> RunStats:
        self._close_phase()
        self.phase = None
        self.stats.seconds = time.perf_counter() - self.start
        self.stats.forward_passes = forward_passes
        self.stats.transformer_calls = forward_passes if transformer_calls is None else transformer_calls
        if self.device.type == "cuda":
            self.stats.peak_memory_bytes = torch.cuda.max_memory_allocated(self.device)
            self.stats.peak_memory_kind = "cuda-allocated"
        else:
            self.stats.peak_memory_bytes = peak_resident_bytes()
            self.stats.peak_memory_kind = "cpu-rss"
        return self.stats
