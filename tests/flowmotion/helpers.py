"""Small sources and generators shared by the FlowMotion tests."""

import numpy as np
import torch


def moving_square(frames: int = 9, height: int = 32, width: int = 48, seed: int = 0, noise: int = 40) -> np.ndarray:
    """A light square moving left to right over a dark, slightly noisy background."""
    rng = np.random.default_rng(seed)
    video = (rng.random((frames, height, width, 3)) * noise).astype(np.uint8)
    for f in range(frames):
        x = int(f * (width - 12) / max(1, frames - 1))
        video[f, height // 3 : height // 3 + 12, x : x + 12] = 220
    return video


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)
