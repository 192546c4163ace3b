"""Speed benchmark: plain Wan sampling, FlowMotion as the authors run it, and FlowMotion optimised.

    python bench/speed.py                       # embedded model on the CPU: passes and ratios, in seconds
    python bench/speed.py --size full --record  # Wan2.1-T2V-1.3B architecture, random weights, on CUDA,
                                                # 480x720, 49 frames, 50 steps; appends to bench/RESULTS.md

Prints one row per mode: transformer forward passes and calls, wall seconds per phase, peak
memory, and the time ratio to plain sampling. Not a test: the numbers are the output.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import flowmotion  # noqa: E402
from flowmotion import FlowMotionConfig  # noqa: E402
from flowmotion.cache import TransferCache  # noqa: E402
from flowmotion.runtime import RuntimeOptions, apply_runtime_options  # noqa: E402

PHASE_COLUMNS = [("encode_prompt", "prompt"), ("encode_source", "src enc"), ("source_motion", "src motion"),
                 ("guided_step", "guided"), ("sampling", "unguided"), ("decode", "decode")]


def source_video(frames: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """A light block crossing a dark frame, and its mask: the benchmark needs a shape, not content."""
    video = np.full((frames, height, width, 3), 40, np.uint8)
    mask = np.zeros((frames, height, width), bool)
    size = max(4, height // 5)
    for f in range(frames):
        x = int(f * (width - size) / max(1, frames - 1))
        video[f, height // 3: height // 3 + size, x:x + size] = 210
        mask[f, height // 3: height // 3 + size, x:x + size] = True
    return video, mask


def modes(steps: int, guided: int, step_cache: float):
    base = dict(num_inference_steps=steps, guided_steps=guided)
    optimised = FlowMotionConfig.optimized(**base)
    # (name, config, optimised run options and cache, prompt, with the source's subject mask)
    yield "plain Wan sampling", FlowMotionConfig(motion_guidance=False, **base), False, "a red ball on grass", False
    yield "FlowMotion faithful", FlowMotionConfig(**base), False, "a red ball on grass", False
    yield "optimised, new shot", optimised, True, "a red ball on grass", False
    yield "optimised, re-prompt", optimised, True, "a blue cube on sand", False
    yield "optimised, re-prompt + subject masks", optimised, True, "a purple ball on water", True
    if step_cache:
        yield (f"optimised + step cache {step_cache:g}",
               FlowMotionConfig.optimized(unguided_step_cache=step_cache, **base), True, "a green cone on snow", False)


def load(size: str, device: str):
    if size == "full":
        from wan_full_size import build_full_size_pipeline

        return build_full_size_pipeline(device)
    return flowmotion.load_pipeline(flowmotion.EMBEDDED_MODEL, device=device)


def measure(args) -> list[dict]:
    pipe = load(args.size, args.device)
    video, mask = source_video(args.frames, args.height, args.width)
    cache = TransferCache()
    optimised_pipe_ready = False
    rows = []
    for name, config, optimised, prompt, subjects in modes(args.steps, args.guided_steps, args.step_cache):
        if optimised and not optimised_pipe_ready:
            apply_runtime_options(pipe, RuntimeOptions(
                attention_backend=args.attention_backend, compile_blocks=args.compile,
                vae_tiling=args.device.startswith("cuda"), offload_text_encoder=args.device.startswith("cuda")))
            optimised_pipe_ready = True
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()
        out = flowmotion.transfer(pipe, video, prompt, config=config, generator=torch.Generator().manual_seed(0),
                                  cache=cache if optimised else None, subject_mask=mask if subjects else None)
        rows.append({"mode": name, "stats": out.stats})
        print(f"  {name}: {out.stats.summary()}", file=sys.stderr)
    return rows


def table(rows: list[dict]) -> str:
    plain = rows[0]["stats"].seconds
    head = ["mode", "passes", "calls"] + [label for _, label in PHASE_COLUMNS] + ["total s", "peak GiB", "x plain"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        s = row["stats"]
        cells = [row["mode"], str(s.forward_passes), str(s.transformer_calls)]
        cells += [f"{s.phase_seconds.get(phase, 0.0):.2f}" for phase, _ in PHASE_COLUMNS]
        cells += [f"{s.seconds:.2f}", f"{s.peak_memory_bytes / 2**30:.2f}", f"{s.seconds / plain:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def describe(args) -> str:
    if args.device.startswith("cuda"):
        device = torch.cuda.get_device_name(torch.device(args.device))
        memory = "peak GiB: torch.cuda.max_memory_allocated per mode"
    else:
        device = f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
        memory = "peak GiB: the process's peak resident memory so far (not per mode)"
    model = ("Wan2.1-T2V-1.3B architecture, random weights" if args.size == "full"
             else "embedded model (flowmotion/embedded)")
    return (f"{datetime.date.today().isoformat()}, {device}, torch {torch.__version__}; {model}; "
            f"{args.width}x{args.height}, {args.frames} frames, {args.steps} steps ({args.guided_steps} guided); "
            f"{memory}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=["tiny", "full"], default="tiny")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--frames", type=int, default=None, help="default: 49 full size, 17 tiny")
    parser.add_argument("--height", type=int, default=None, help="default: 480 full size, 64 tiny")
    parser.add_argument("--width", type=int, default=None, help="default: 720 full size, 96 tiny")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--guided-steps", type=int, default=10)
    parser.add_argument("--step-cache", type=float, default=0.05, help="threshold of the step-cache row (0: no row)")
    parser.add_argument("--attention-backend", default=None)
    parser.add_argument("--compile", action="store_true", help="regional compilation in the optimised modes")
    parser.add_argument("--record", action="store_true", help="append the table to bench/RESULTS.md")
    args = parser.parse_args()
    full = args.size == "full"
    args.frames = args.frames or (49 if full else 17)
    args.height = args.height or (480 if full else 64)
    args.width = args.width or (720 if full else 96)

    header = describe(args)
    result = f"{header}\n\n{table(measure(args))}\n"
    print(result)
    if args.record:
        with open(Path(__file__).with_name("RESULTS.md"), "a") as results:
            results.write(f"\n### {result}")


if __name__ == "__main__":
    main()
