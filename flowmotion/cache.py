"""Caches that make a re-prompt of the same shot cheap: prompt embeddings and source motion.

A previs artist re-prompts one playblast many times. The source latent and the per-step source
motion depend only on the source frames, the model, the schedule and the source settings, never
on the prompt or the target seed, so they are computed once per shot and reused.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from . import durable
from .config import FlowMotionConfig


@dataclass
class SourceMotion:
    """The encoded source and its motion representation at each guided step."""

    source_latent: torch.Tensor
    motions: list[torch.Tensor]

    def to(self, device) -> SourceMotion:
        return SourceMotion(self.source_latent.to(device), [m.to(device) for m in self.motions])


def model_key(pipe) -> str:
    """What identifies a model for caching: its origin, its components' configs and its precision."""
    parts = {
        "origin": getattr(pipe, "name_or_path", "") or pipe.config.get("_name_or_path", ""),
        "transformer": dict(pipe.transformer.config),
        "vae": dict(pipe.vae.config),
        "dtype": str(pipe.transformer.dtype),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def source_key(frames: np.ndarray, model: str, shape: tuple, sigmas: list[float], config: FlowMotionConfig) -> str:
    """The key of a shot's source motion: everything it depends on, and nothing else."""
    digest = hashlib.sha256(np.ascontiguousarray(frames).tobytes())
    settings = {
        "model": model,
        "frames_shape": list(frames.shape),
        "latent_shape": list(shape),
        "sigmas": [round(s, 8) for s in sigmas[: config.guided_step_count]],
        "guided_steps": config.guided_step_count,
        "source_motion": config.source_motion,
        "source_prompt": config.source_prompt,
        "source_guidance_scale": config.source_guidance_scale,
        "source_seed": config.source_seed,
        "skip_identical_source_cfg": config.skip_identical_source_cfg,
        "max_sequence_length": config.max_sequence_length,
    }
    digest.update(json.dumps(settings, sort_keys=True).encode())
    return digest.hexdigest()[:32]


class SourceMotionCache:
    """Source motions by key: the newest few in memory, and all of them in a folder when one is given.

    `sole_writer`: no other process writes into the folder (the backend's lock on its job store
    says so), so the files a killed writer left half-written there are removed at the start.
    """

    def __init__(
        self, folder: str | os.PathLike | None = None, in_memory: int = 4, on_disk: int = 64, sole_writer: bool = False
    ):
        self.folder = Path(folder) if folder is not None else None
        self.in_memory = in_memory
        self.on_disk = on_disk
        self.entries: OrderedDict[str, SourceMotion] = OrderedDict()
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            if sole_writer:
                durable.remove_leftovers(self.folder)

    def get(self, key: str) -> SourceMotion | None:
        if key in self.entries:
            self.entries.move_to_end(key)
            return self.entries[key]
        path = self._path(key)
        if path is None or not path.is_file():
            return None
        try:
            stored = load_file(path)
            count = len(stored) - 1
            entry = SourceMotion(stored["source_latent"], [stored[f"motion_{i:03d}"] for i in range(count)])
        except (OSError, KeyError, SafetensorError):
            # A damaged cache file costs a recompute, never a failed job.
            path.unlink(missing_ok=True)
            return None
        self._remember(key, entry)
        return entry

    def put(self, key: str, entry: SourceMotion) -> None:
        entry = entry.to("cpu")
        self._remember(key, entry)
        path = self._path(key)
        if path is None:
            return
        tensors = {"source_latent": entry.source_latent.contiguous()}
        tensors.update({f"motion_{i:03d}": motion.contiguous() for i, motion in enumerate(entry.motions)})
        with durable.replacing(path) as staged:
            save_file(tensors, staged)
        self._prune_disk()

    def _path(self, key: str) -> Path | None:
        return None if self.folder is None else self.folder / f"{key}.safetensors"

    def _remember(self, key: str, entry: SourceMotion) -> None:
        self.entries[key] = entry
        self.entries.move_to_end(key)
        while len(self.entries) > self.in_memory:
            self.entries.popitem(last=False)

    def _prune_disk(self) -> None:
        assert self.folder is not None  # only a cache with a folder writes to disk
        files = sorted(self.folder.glob("*.safetensors"), key=lambda p: p.stat().st_mtime)
        for stale in files[: max(0, len(files) - self.on_disk)]:
            stale.unlink(missing_ok=True)


class PromptCache:
    """Prompt embeddings by (model, text, sequence length), newest kept."""

    def __init__(self, size: int = 64):
        self.size = size
        self.entries: OrderedDict[tuple, torch.Tensor] = OrderedDict()

    def get(self, key: tuple) -> torch.Tensor | None:
        if key in self.entries:
            self.entries.move_to_end(key)
        return self.entries.get(key)

    def put(self, key: tuple, embedding: torch.Tensor) -> None:
        self.entries[key] = embedding
        self.entries.move_to_end(key)
        while len(self.entries) > self.size:
            self.entries.popitem(last=False)


class TransferCache:
    """The caches one long-lived process (the backend) keeps for its model."""

    def __init__(
        self, folder: str | os.PathLike | None = None, in_memory: int = 4, on_disk: int = 64, sole_writer: bool = False
    ):
        self.prompts = PromptCache()
        self.sources = SourceMotionCache(folder, in_memory=in_memory, on_disk=on_disk, sole_writer=sole_writer)
