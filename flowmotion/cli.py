"""`flowmotion transfer SOURCE --prompt ... --out OUT`: motion transfer from the command line."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

from .config import SOURCE_MOTIONS, FlowMotionConfig, field_docs
from .errors import FlowMotionError
from .loading import EMBEDDED_MAX_AREA, EMBEDDED_MODEL, WAN_MODEL_ID, max_area_for

DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per FlowMotionConfig field, typed and documented from the dataclass. A flag left out
    is absent from the namespace, so the config's own default (or optimized()'s) applies."""
    group = parser.add_argument_group("FlowMotion settings (defaults are the paper's)")
    docs = field_docs(FlowMotionConfig)
    for field in dataclasses.fields(FlowMotionConfig):
        help_text = f"{docs.get(field.name, '')} (default: {field.default!r})"
        kind = field.type if isinstance(field.type, str) else field.type.__name__
        common: dict[str, Any] = dict(dest=field.name, default=argparse.SUPPRESS, help=help_text)
        if kind.startswith("bool"):
            group.add_argument(_flag(field.name), action=argparse.BooleanOptionalAction, **common)
        elif field.name == "source_motion":
            group.add_argument(_flag(field.name), choices=SOURCE_MOTIONS, **common)
        else:
            group.add_argument(_flag(field.name), type={"int": int, "float": float, "str": str}[kind], **common)


def config_from_arguments(args: argparse.Namespace) -> FlowMotionConfig:
    given = {
        field.name: getattr(args, field.name)
        for field in dataclasses.fields(FlowMotionConfig)
        if hasattr(args, field.name)
    }
    if getattr(args, "optimized", False):
        return FlowMotionConfig.optimized(**given)
    return FlowMotionConfig(**given)


def runtime_from_arguments(args: argparse.Namespace):
    from .runtime import RuntimeOptions

    return RuntimeOptions(
        attention_backend=args.attention_backend,
        fp8_linear=args.fp8,
        compile_blocks=args.compile,
        vae_tiling=args.vae_tiling,
        offload_text_encoder=args.offload_text_encoder,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flowmotion", description="FlowMotion video motion transfer.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("transfer", help="generate a video of a prompt with the motion of a source video")
    run.add_argument("source", help="source video: a video file (mp4, mov, ...) or a folder of PNG/JPEG frames")
    run.add_argument("--prompt", required=True, help="what the new video shows")
    run.add_argument(
        "--subject-mask",
        default=None,
        metavar="MASK",
        help="the shot's subjects, white on black (or opaque on a transparent film), as a video file or "
        "frame folder with the source's frames and size: adds Subject Alignment (the take's "
        "subjects go where the source's are)",
    )
    run.add_argument("--negative-prompt", default="", help="what it should not show (default: empty)")
    run.add_argument(
        "--out",
        required=True,
        help="result: a video file (by its suffix, e.g. .mp4) or a folder that receives PNG frames",
    )
    run.add_argument(
        "--model",
        default=EMBEDDED_MODEL,
        help=f"'{EMBEDDED_MODEL}' (the small built-in model), a local diffusers folder, "
        f"or a hub id such as {WAN_MODEL_ID} (default: {EMBEDDED_MODEL})",
    )
    run.add_argument("--device", default=None, help="cuda, cuda:1, cpu (default: cuda when present)")
    run.add_argument(
        "--dtype", choices=sorted(DTYPES), default=None, help="weights' precision (default: bf16 on CUDA, fp32 on CPU)"
    )
    run.add_argument("--seed", type=int, default=0, help="seed of the initial and source noise (default: 0)")
    run.add_argument("--frames", type=int, default=None, help="frames of the result (default: the source's)")
    run.add_argument("--height", type=int, default=None, help="height of the result (default: the source's)")
    run.add_argument("--width", type=int, default=None, help="width of the result (default: the source's)")
    run.add_argument(
        "--max-area",
        type=int,
        default=None,
        help="most pixels per frame the model works at; larger shots are scaled down for the model "
        "and the result scaled back (Wan2.1 was trained near 480x832 = 399360; default: no cap, "
        f"or {EMBEDDED_MAX_AREA} for the embedded model, the area of its training clips)",
    )
    run.add_argument(
        "--fps",
        type=float,
        default=None,
        help="frame rate of a video result (default: the source's, or 24 for a frame folder)",
    )
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.add_argument(
        "--optimized",
        action="store_true",
        help="the speed-ups of FlowMotionConfig.optimized(): a single source pass, a guided step's "
        "velocity evaluated once for its Adam iterations (130 passes instead of 180), CFG "
        "batched where the machine gains from it",
    )
    speed = run.add_argument_group("how the model runs (no effect on the method)")
    speed.add_argument(
        "--attention-backend",
        default=None,
        help="diffusers attention backend, e.g. flash, _native_cudnn, or sage8 (SageAttention's 8-bit "
        "kernel); one this machine cannot run falls back to PyTorch SDPA with a note",
    )
    speed.add_argument(
        "--fp8",
        action="store_true",
        help="FP8 linear layers in the transformer blocks (torchao; Ada or Hopper GPUs, else a note)",
    )
    speed.add_argument("--compile", action="store_true", help="compile the transformer's repeated block (CUDA)")
    speed.add_argument(
        "--vae-tiling",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="encode and decode in tiles, less VRAM (default: where free memory asks for it)",
    )
    speed.add_argument(
        "--offload-text-encoder",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="keep the text encoder in host memory, streaming its layers to the GPU "
        "(default: where free memory asks for it)",
    )
    add_config_arguments(run)
    return parser


def _describe_model(model: str) -> str:
    if model == EMBEDDED_MODEL:
        return f"{EMBEDDED_MODEL} (the built-in model; --model {WAN_MODEL_ID} for the real Wan2.1)"
    return model


def run_transfer(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from . import load_pipeline, transfer
    from .runtime import apply_runtime_options
    from .transfer import forward_pass_count
    from .video import read_video, write_video

    config = config_from_arguments(args)
    frames, source_fps = read_video(args.source)
    subject_mask = read_video(args.subject_mask, alpha_is_mask=True)[0] if args.subject_mask else None
    dtype = getattr(torch, DTYPES[args.dtype]) if args.dtype else None
    print(f"model: {_describe_model(args.model)}", file=sys.stderr)
    pipe = load_pipeline(args.model, device=args.device, dtype=dtype)
    runtime = runtime_from_arguments(args)
    apply_runtime_options(pipe, runtime)
    bar = tqdm(
        total=forward_pass_count(config),
        unit="pass",
        disable=args.quiet,
        file=sys.stderr,
        bar_format="{desc} {bar} {n_fmt}/{total_fmt} passes [{elapsed}<{remaining}]",
    )

    def on_progress(progress) -> None:
        steps = f" step {progress.step}/{progress.total}" if progress.phase in ("guided_step", "sampling") else ""
        bar.set_description_str(f"{progress.phase}{steps}".ljust(24))
        bar.update(progress.forward_passes - bar.n)

    try:
        result = transfer(
            pipe,
            frames,
            args.prompt,
            negative_prompt=args.negative_prompt,
            config=config,
            generator=torch.Generator().manual_seed(args.seed),
            on_progress=on_progress,
            num_frames=args.frames,
            height=args.height,
            width=args.width,
            max_area=max_area_for(args.model, args.max_area),
            subject_mask=subject_mask,
            runtime=runtime,
        )
        bar.update(result.stats.forward_passes - bar.n)
    finally:
        bar.close()
    for key, choice in result.stats.runtime.items():
        print(f"plan: {key.replace('_', ' ')} {choice}", file=sys.stderr)
    fps = args.fps or source_fps or 24.0
    written = write_video(result.frames, args.out, fps=fps)
    count, height, width = result.frames.shape[:3]
    plan = result.plan
    worked = f"; the model worked at {plan.model_frames} frames, {plan.model_width}x{plan.model_height}"
    print(f"wrote {written} ({count} frames, {width}x{height}{worked}) in {result.stats.summary()}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "transfer":
            return run_transfer(args)
    except FlowMotionError as error:
        print(f"flowmotion: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("flowmotion: interrupted; nothing was written", file=sys.stderr)
        return 130
    return 1


if __name__ == "__main__":
    sys.exit(main())
