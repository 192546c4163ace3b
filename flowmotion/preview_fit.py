"""Fit the preview's map from latent channels to RGB for a model's VAE.

    python -m flowmotion.preview_fit --model embedded                  # refreshes the package's own
    python -m flowmotion.preview_fit --model /models/wan21 --out wan21_preview.json

Procedural clips (flowmotion.toy.data) are encoded to normalised latents, as the sampler sees them,
and decoded again; each latent position's decoded pixels (the frames and the square of pixels it
stands for) are averaged, and RGB = latent @ W + b is solved by least squares. The fit is on the
decoded pixels, so a preview shows what the VAE would show. Any pipeline `model_for` takes works:
for Wan2.1's 16-channel VAE, run it on the real weights.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from .model import model_for
from .preview import FACTORS_FILE, LatentRGB, preview_frames, read_factors, vae_fingerprint, write_factors
from .toy.data import training_clips

FIT_CLIPS = 24
FIT_SEED = 1234


def clip_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 (F, H, W, 3) -> (1, 3, F, H, W) in [-1, 1]."""
    return torch.from_numpy(frames).float().div(127.5).sub(1).permute(3, 0, 1, 2).unsqueeze(0)


def pooled_rgb(decoded: torch.Tensor, latent_shape: tuple[int, ...], temporal: int) -> torch.Tensor:
    """Decoded video (1, 3, F, H, W) in [-1, 1] -> RGB in [0, 1] per latent position, (f, h, w, 3): the first
    frame alone, then `temporal` frames each, and the pixels under each position, averaged."""
    video = (decoded[0].float() / 2 + 0.5).clamp(0, 1)
    frames, rows, columns = latent_shape[2:]
    first, rest = video[:, :1], video[:, 1 : 1 + (frames - 1) * temporal]
    if frames > 1:
        rest = rest.unflatten(1, (frames - 1, temporal)).mean(dim=2)
        video = torch.cat([first, rest], dim=1)
    else:
        video = first
    pooled = torch.nn.functional.adaptive_avg_pool2d(video, (rows, columns))
    return pooled.permute(1, 2, 3, 0)


def latents_and_colours(pipe, clips: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Every latent position of the clips (positions, channels) and its decoded colour (positions, 3)."""
    model = model_for(pipe)
    temporal = pipe.vae_scale_factor_temporal
    latents, colours = [], []
    for frames in clips:
        latent = model.encode_video(clip_tensor(frames))
        decoded = model.decode(latent)
        colours.append(pooled_rgb(decoded, tuple(latent.shape), temporal).reshape(-1, 3))
        latents.append(latent[0].permute(1, 2, 3, 0).reshape(-1, latent.shape[1]).float().cpu())
    return torch.cat(latents), torch.cat(colours).cpu()


def fit_latent_rgb(pipe, clips: list[np.ndarray], name: str = "") -> LatentRGB:
    """Least squares of the decoded colours on the latent channels (and a constant)."""
    latents, colours = latents_and_colours(pipe, clips)
    design = torch.cat([latents, torch.ones(len(latents), 1)], dim=1).double()
    solution = torch.linalg.lstsq(design, colours.double()).solution.float().numpy()
    return LatentRGB(solution[:-1], solution[-1], name)


def preview_error(pipe, factors: LatentRGB, clips: list[np.ndarray]) -> float:
    """Mean absolute error, in [0, 1] units, of the preview against the decoded colour per latent position."""
    model = model_for(pipe)
    errors = []
    for frames in clips:
        latent = model.encode_video(clip_tensor(frames))
        target = pooled_rgb(model.decode(latent), tuple(latent.shape), pipe.vae_scale_factor_temporal)
        preview = torch.from_numpy(preview_frames(latent, factors)).float() / 255
        errors.append((preview - target).abs().mean().item())
    return float(np.mean(errors))


def fit_clips(count: int, seed: int) -> list[np.ndarray]:
    return [clip.frames for clip in training_clips(count, seed)]


def main(argv: list[str] | None = None) -> None:
    from .loading import load_pipeline

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--clips", type=int, default=FIT_CLIPS)
    parser.add_argument("--out", default=str(FACTORS_FILE), help="JSON file the map is added to")
    args = parser.parse_args(argv)
    pipe = load_pipeline(args.model, device=args.device)
    factors = fit_latent_rgb(pipe, fit_clips(args.clips, FIT_SEED), name=Path(args.model).name)
    error = preview_error(pipe, factors, fit_clips(8, FIT_SEED + 1))
    out = Path(args.out)
    stored = read_factors(out) if out.is_file() else {}
    stored[vae_fingerprint(pipe.vae)] = {**factors.as_json(), "held_out_mean_abs_error": round(error, 4)}
    write_factors(out, stored)
    print(
        f"{factors.name}: {factors.weights.shape[0]} channels -> RGB, held-out mean absolute error "
        f"{error:.4f} of full scale; written to {out}"
    )


if __name__ == "__main__":
    main()
