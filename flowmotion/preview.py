"""Live previews: the predicted clean latent of a step as small RGB frames, without the VAE.

Each latent position becomes one pixel through a linear map from latent channels to RGB, fitted by
least squares against what the VAE decodes (see flowmotion.preview_fit). It costs a matrix product
per step, so a preview every step leaves the run's time almost unchanged (bench/preview_cost.py).
The map depends on the VAE: the package ships it for the embedded model; for another VAE (Wan2.1's
16 channels, Wan2.2's 48) run the same fit on its weights and pass the file to `latent_rgb_for`.
Until a VAE has its fit, `latent_rgb_for(pipe, fallback=True)` shows its first three latent
channels as red, green and blue (`first_channels_rgb`): the shapes and motion of the take are
there, its colours are not.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import FlowMotionError
from .request import StepHook, StepInfo

FACTORS_FILE = Path(__file__).resolve().parent / "preview_factors.json"
"""The fitted maps the package ships, by VAE fingerprint."""


@dataclass(frozen=True)
class LatentRGB:
    """RGB in [0, 1] = latent channels @ weights + bias, per latent position."""

    weights: np.ndarray
    """(channels, 3)"""
    bias: np.ndarray
    """(3,)"""
    name: str = ""

    def as_json(self) -> dict:
        return {"name": self.name, "bias": [round(float(x), 6) for x in self.bias], "weights": self.weights.tolist()}

    @classmethod
    def from_json(cls, data: dict) -> LatentRGB:
        weights = np.asarray(data["weights"], np.float32)
        bias = np.asarray(data["bias"], np.float32)
        if weights.ndim != 2 or weights.shape[1] != 3 or bias.shape != (3,):
            name = data.get("name", "")
            raise FlowMotionError(f"preview factors {name!r} are not a (channels, 3) map and a bias of 3")
        return cls(weights, bias, str(data.get("name", "")))


def vae_config_digest(vae, leave_out: tuple[str, ...] = ()):
    """A sha256 of a VAE's config, without its private keys (`_name_or_path`, versions: the same
    weights loaded from another folder are the same VAE) and the keys in `leave_out`."""
    config = {key: value for key, value in dict(vae.config).items() if not key.startswith("_") and key not in leave_out}
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())


def vae_fingerprint(vae) -> str:
    """Identifies a VAE's latent space: its config and the weights that read the latent first."""
    digest = vae_config_digest(vae)
    digest.update(vae.post_quant_conv.weight.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()[:24]


def read_factors(path: str | Path) -> dict[str, dict]:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise FlowMotionError(f"could not read preview factors from {path}: {error}") from None


def write_factors(path: str | Path, stored: dict[str, dict]) -> None:
    """One line per channel: the file stays readable and its diffs small."""

    def entry(data: dict) -> str:
        rows = ",\n".join(f"   {json.dumps([round(x, 6) for x in row])}" for row in data["weights"])
        head = {key: value for key, value in data.items() if key != "weights"}
        return json.dumps(head)[:-1] + f', "weights": [\n{rows}\n  ]}}'

    body = ",\n".join(f" {json.dumps(key)}: {entry(data)}" for key, data in stored.items())
    Path(path).write_text("{\n" + body + "\n}\n")


FALLBACK_NAME = "first three channels"
FALLBACK_SPREAD = 4.0
"""The sampler's latents are normalised to about unit variance: -2 to 2 spans black to white."""


def first_channels_rgb(channels: int) -> LatentRGB:
    """The map for a VAE with no fit: its first three latent channels as red, green and blue."""
    if channels < 3:
        raise FlowMotionError(f"a preview needs a latent of 3 channels or more, not {channels}")
    weights = np.zeros((channels, 3), np.float32)
    weights[[0, 1, 2], [0, 1, 2]] = 1.0 / FALLBACK_SPREAD
    return LatentRGB(weights, np.full(3, 0.5, np.float32), FALLBACK_NAME)


def latent_channels(vae) -> int:
    """Channels of a VAE's latent: Wan's VAEs call them z_dim, others latent_channels."""
    config = vae.config
    channels = getattr(config, "z_dim", None) or getattr(config, "latent_channels", None)
    if not isinstance(channels, int):
        raise FlowMotionError("the VAE's config names no latent channel count (z_dim or latent_channels)")
    return channels


def latent_rgb_for(pipe, path: str | Path | None = None, *, fallback: bool = False) -> LatentRGB:
    """The fitted map for `pipe`'s VAE, from `path` (a file written by flowmotion.preview_fit) or the
    package's own. When neither holds it: with `fallback`, `first_channels_rgb`; else a
    FlowMotionError saying how to fit one."""
    fingerprint = vae_fingerprint(pipe.vae)
    for source in ([path] if path is not None else []) + [FACTORS_FILE]:
        entry = read_factors(source).get(fingerprint)
        if entry is not None:
            return LatentRGB.from_json(entry)
    if fallback:
        return first_channels_rgb(latent_channels(pipe.vae))
    raise FlowMotionError(
        "no preview factors for this model's VAE; fit them once with "
        "`python -m flowmotion.preview_fit --model <model> --out <file>` and pass that file"
    )


def preview_frames(latent_prediction: torch.Tensor, factors: LatentRGB, scale: int = 1) -> np.ndarray:
    """A latent (1, channels, frames, height, width) -> uint8 frames (frames, height * scale,
    width * scale, 3): one pixel per latent position, repeated `scale` times each way."""
    if latent_prediction.ndim != 5 or latent_prediction.shape[1] != factors.weights.shape[0]:
        raise FlowMotionError(
            f"a preview needs a latent (1, {factors.weights.shape[0]}, frames, height, width), "
            f"not {tuple(latent_prediction.shape)}"
        )
    latent = latent_prediction[0].detach().float().cpu()
    weights = torch.from_numpy(factors.weights)
    rgb = torch.einsum("cfhw,cd->fhwd", latent, weights) + torch.from_numpy(factors.bias)
    frames = (rgb.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    if scale > 1:
        frames = frames.repeat(scale, axis=1).repeat(scale, axis=2)
    return frames


@dataclass(frozen=True)
class Preview:
    """One preview of a running take."""

    step: int
    """The step just taken, 0-based."""
    total: int
    frames: np.ndarray
    """uint8 (latent frames, height, width, 3)."""


def preview_hook(factors: LatentRGB, send: Callable[[Preview], None], every: int = 1, scale: int = 1) -> StepHook:
    """A step hook that sends a Preview every `every` steps and at the last step."""
    if every < 1:
        raise FlowMotionError(f"a preview every {every} steps is not a cadence; use 1 or more")

    def hook(info: StepInfo) -> None:
        if info.step % every == 0 or info.step == info.total - 1:
            send(Preview(info.step, info.total, preview_frames(info.latent_prediction, factors, scale)))

    return hook
