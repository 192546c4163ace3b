"""Loading a Wan pipeline: the embedded model, a local diffusers folder, or a hub id."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .errors import FlowMotionError
from .toy.data import SIZE as TOY_SIZE

WAN_MODEL_ID = "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"
EMBEDDED_MODEL = "embedded"
EMBEDDED_FOLDER = Path(__file__).resolve().parent / "embedded"
"""The embedded model's weights, shipped inside the package (trained by flowmotion.toy.train)."""


def training_area(folder: Path) -> int | None:
    """Pixels per frame of the clips a model folder written by flowmotion.toy.train was trained on (its
    TRAINING.json's width x height, or size squared for square ones); None for any other folder."""
    try:
        training = json.loads((Path(folder) / "TRAINING.json").read_text())
    except (OSError, ValueError):
        return None
    if "width" in training and "height" in training:
        return int(training["width"]) * int(training["height"])
    return int(training["size"]) ** 2 if "size" in training else None


EMBEDDED_MAX_AREA = training_area(EMBEDDED_FOLDER) or TOY_SIZE * TOY_SIZE
"""Pixels per frame of the clips the embedded model was trained on: it works at that area by default."""


def max_area_for(model: str, asked: int | None = None) -> int | None:
    """The working area for `model`: what the caller asked for, else the area the embedded model (or a
    folder trained by flowmotion.toy.train) was trained at, else no cap."""
    if asked is not None:
        return asked
    if model == EMBEDDED_MODEL:
        return EMBEDDED_MAX_AREA
    return training_area(Path(model).expanduser())


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def default_dtype(device: str | torch.device) -> torch.dtype:
    """bf16 on CUDA (the Wan weights' own precision), fp32 elsewhere."""
    return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32


def _fetch_hint(model: str) -> str:
    return (
        f"fetch it once on a machine with network access with `hf download {model} --local-dir <folder>` "
        "and pass that folder as the model, or set HF_HOME to a cache that holds it"
    )


def _from_pretrained(model: str, dtype: torch.dtype):
    from diffusers import AutoencoderKLWan, WanPipeline

    # The Wan VAE stays in fp32: its decode loses visible detail in bf16.
    vae = AutoencoderKLWan.from_pretrained(model, subfolder="vae", dtype=torch.float32)
    return WanPipeline.from_pretrained(model, vae=vae, dtype=dtype)


def load_pipeline(model: str = WAN_MODEL_ID, device: str | None = None, dtype: torch.dtype | None = None):
    """A ready WanPipeline on `device`.

    `model` is `EMBEDDED_MODEL` ("embedded", the small model the package ships), a local folder
    saved with `save_pretrained`, or a hub id such as the default Wan2.1-T2V-1.3B. Missing weights
    raise FlowMotionError saying how to fetch them.
    """
    device = device or default_device()
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        raise FlowMotionError(f"device {device!r} was asked for but this machine has no CUDA GPU; use --device cpu")
    if model == EMBEDDED_MODEL:
        if not (EMBEDDED_FOLDER / "model_index.json").is_file():
            raise FlowMotionError(
                f"the embedded model is missing from {EMBEDDED_FOLDER}; reinstall the package, or "
                "train it with `python -m flowmotion.toy.train --out flowmotion/embedded`"
            )
        # The embedded model is small enough that fp32 costs nothing; it runs in fp32 unless told otherwise.
        model, dtype = str(EMBEDDED_FOLDER), dtype or torch.float32
    dtype = dtype or default_dtype(device)
    path = Path(model).expanduser()
    if path.exists():
        if not (path / "model_index.json").is_file():
            raise FlowMotionError(
                f"{path} is not a diffusers model folder (it has no model_index.json); "
                "pass the folder that `save_pretrained` or `hf download` wrote"
            )
        model = str(path)
    elif model.startswith((".", "/", "~")) or model.count("/") != 1:
        raise FlowMotionError(f"model {model!r} is neither an existing folder nor a hub id like {WAN_MODEL_ID}")
    _quiet_loading()
    try:
        pipe = _from_pretrained(model, dtype)
    except (OSError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        hint = "" if path.exists() else "; " + _fetch_hint(model)
        raise FlowMotionError(f"could not load model {model!r}: {first_line}{hint}") from None
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def _quiet_loading() -> None:
    """Loading progress bars are noise in a command line's output and in the backend's log."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
