"""How far each faster-pass runtime option moves the result from plain bf16, on CUDA.

    python bench/accuracy.py --options fp8,sage8,compile [--steps 10] [--size full]

For each option: the relative difference |v - v_bf16| / |v_bf16| of one transformer pass (the velocity
at the first step, from the same noise), the seconds of that pass after a warm-up, and the relative
difference of a whole run's final latent (FlowMotion optimised, `--steps` steps with a fifth of them
guided). An option this machine cannot run is reported with its note instead of figures. Each option
gets a fresh pipeline, built with the same seed, so the options never mix.
Not a test: the table is the output.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from speed import source_video  # noqa: E402

import flowmotion  # noqa: E402
from flowmotion import FlowMotionConfig  # noqa: E402
from flowmotion.runtime import RuntimeOptions, apply_runtime_options  # noqa: E402
from flowmotion.wan import WanModel  # noqa: E402

OPTIONS = {
    "bf16": RuntimeOptions(),
    "fp8": RuntimeOptions(fp8_linear=True),
    "sage8": RuntimeOptions(attention_backend="sage8"),
    "compile": RuntimeOptions(compile_blocks=True),
    "fp8+sage8+compile": RuntimeOptions(fp8_linear=True, attention_backend="sage8", compile_blocks=True),
}


def build(size: str, device: str):
    torch.manual_seed(0)  # the same random weights for every option
    if size == "full":
        from wan_full_size import build_full_size_pipeline

        return build_full_size_pipeline(device), 49, 480, 720
    return flowmotion.load_pipeline(flowmotion.EMBEDDED_MODEL, device=device), 17, 32, 32


def one_pass(pipe, latent, embedding, timestep) -> tuple[torch.Tensor, float]:
    with torch.no_grad():

        def call():
            return pipe.transformer(
                hidden_states=latent, timestep=timestep, encoder_hidden_states=embedding, return_dict=False
            )[0].float()

        call()  # warm-up: compilation and kernel selection
        if latent.device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        velocity = call()
        if latent.device.type == "cuda":
            torch.cuda.synchronize()
        return velocity, time.perf_counter() - started


def relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def measure(args):
    reference = None
    for name in ["bf16"] + [n for n in args.options if n != "bf16"]:
        pipe, frames, height, width = build(args.size, args.device)
        notes = apply_runtime_options(pipe, OPTIONS[name])
        if notes:
            yield name, None, None, None, "; ".join(notes)
            continue
        video, _ = source_video(frames, height, width)
        shape = WanModel(pipe).latent_shape(frames, height, width)
        noise = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(args.device)
        embedding = torch.randn(1, 512, pipe.transformer.config.text_dim, generator=torch.Generator().manual_seed(1))
        embedding = embedding.to(args.device, pipe.transformer.dtype)
        timestep = torch.tensor([999.0], device=args.device)
        velocity, seconds = one_pass(pipe, noise.to(pipe.transformer.dtype), embedding, timestep)
        config = FlowMotionConfig.optimized(num_inference_steps=args.steps, guided_steps=max(1, args.steps // 5))
        final = flowmotion.transfer(
            pipe, video, "a red ball on grass", config=config, latents=noise, output_type="latent"
        ).frames
        if reference is None:
            reference = (velocity, final)
            yield name, 0.0, seconds, 0.0, ""
        else:
            yield (
                name,
                relative_difference(velocity, reference[0]),
                seconds,
                relative_difference(final, reference[1]),
                "",
            )
        del pipe
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--options",
        default="fp8,sage8,compile",
        help=f"comma-separated, of {', '.join(OPTIONS)} (bf16, the reference, always runs)",
    )
    parser.add_argument("--size", choices=["embedded", "full"], default="full")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    args.options = [name.strip() for name in args.options.split(",") if name.strip()]
    unknown = [name for name in args.options if name not in OPTIONS]
    if unknown:
        parser.error(f"unknown option {unknown[0]!r}; choose from {', '.join(OPTIONS)}")
    device = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else args.device
    print(f"{device}, torch {torch.__version__}, size {args.size}, whole run: {args.steps} steps\n")
    print("| option | one pass: rel. diff | one pass s | whole run: rel. diff of final latent | note |")
    print("|---|---|---|---|---|")
    for name, pass_diff, seconds, run_diff, note in measure(args):
        if pass_diff is None:
            print(f"| {name} | - | - | - | {note} |", flush=True)
        else:
            print(f"| {name} | {pass_diff:.4f} | {seconds:.3f} | {run_diff:.4f} | {note} |", flush=True)


if __name__ == "__main__":
    main()
