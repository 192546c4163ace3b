"""Speed benchmark: plain Wan sampling, FlowMotion as the authors run it, and FlowMotion optimised.

    python bench/speed.py                       # embedded model on the CPU: passes and ratios, in seconds
    python bench/speed.py --size full --record  # Wan2.1-T2V-1.3B architecture, random weights, on CUDA,
                                                # 480x720, 49 frames, 50 steps; appends to bench/RESULTS.md

    python bench/speed.py --modes plain,faithful,new-shot --dry-run   # chosen rows; what would run

Prints one row per mode as it completes, then the table (with --repeat N, each row's fastest of N
rounds): transformer forward passes and calls, the
run's plan (B batched CFG, O text encoder offloaded, T VAE tiled), wall seconds per phase, peak
memory, and the time ratio to plain sampling. Every row runs with the same runtime options
(--attention-backend, --fp8, --compile) and lets the plan choose, except where a row overrides it
(unbatched: CFG as two calls; memory-saver: offload and tiling forced). Not a test: the numbers
are the output.
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

PHASE_COLUMNS = [
    ("encode_prompt", "prompt"),
    ("encode_source", "src enc"),
    ("source_motion", "src motion"),
    ("guided_step", "guided"),
    ("sampling", "unguided"),
    ("decode", "decode"),
]


def source_video(frames: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """A light block crossing a dark frame, and its mask: the benchmark needs a shape, not content."""
    video = np.full((frames, height, width, 3), 40, np.uint8)
    mask = np.zeros((frames, height, width), bool)
    size = max(4, height // 5)
    for f in range(frames):
        x = int(f * (width - size) / max(1, frames - 1))
        video[f, height // 3 : height // 3 + size, x : x + size] = 210
        mask[f, height // 3 : height // 3 + size, x : x + size] = True
    return video, mask


MODES = (
    "plain",
    "faithful",
    "new-shot",
    "reprompt",
    "reprompt-masks",
    "unbatched",
    "exact",
    "step-cache",
    "memory-saver",
)
"""Row names for --modes, in the table's order. memory-saver comes last: it moves the text encoder to
host memory for good."""


def modes(steps: int, guided: int, step_cache: float, selected=MODES):
    """(key, row name, config, cached shot, prompt, subject mask, runtime overrides) for each chosen row."""
    base = dict(num_inference_steps=steps, guided_steps=guided)
    optimised = FlowMotionConfig.optimized(**base)
    rows = [
        (
            "plain",
            "plain Wan sampling",
            FlowMotionConfig(motion_guidance=False, **base),
            False,
            "a red ball on grass",
            False,
            {},
        ),
        ("faithful", "FlowMotion faithful", FlowMotionConfig(**base), False, "a red ball on grass", False, {}),
        ("new-shot", "optimised, new shot", optimised, True, "a red ball on grass", False, {}),
        ("reprompt", "optimised, re-prompt", optimised, True, "a blue cube on sand", False, {}),
        ("reprompt-masks", "optimised, re-prompt + subject masks", optimised, True, "a purple ball on water", True, {}),
        (
            "unbatched",
            "optimised, re-prompt, CFG unbatched",
            optimised.replace(batch_guidance=False),
            True,
            "a yellow ball on snow",
            False,
            {},
        ),
        (
            "exact",
            "optimised without velocity reuse, re-prompt",
            optimised.replace(reuse_velocity_across_iterations=False, reuse_velocity_for_euler_step=False),
            True,
            "a red cube on sand",
            False,
            {},
        ),
        (
            "step-cache",
            f"optimised + step cache {step_cache:g}",
            optimised.replace(unguided_step_cache=step_cache),
            True,
            "a green cone on snow",
            False,
            {},
        ),
        (
            "memory-saver",
            "optimised, re-prompt, text encoder offloaded + VAE tiled",
            optimised,
            True,
            "a blue ball on grass",
            False,
            dict(offload_text_encoder=True, vae_tiling=True),
        ),
    ]
    for row in rows:
        if row[0] in selected and not (row[0] == "step-cache" and not step_cache):
            yield row[1:]


def load(size: str, device: str):
    if size == "full":
        from wan_full_size import build_full_size_pipeline

        return build_full_size_pipeline(device)
    return flowmotion.load_pipeline(flowmotion.EMBEDDED_MODEL, device=device)


def measure(args) -> list[dict]:
    pipe = load(args.size, args.device)
    notes = apply_runtime_options(
        pipe, RuntimeOptions(attention_backend=args.attention_backend, fp8_linear=args.fp8, compile_blocks=args.compile)
    )
    video, mask = source_video(args.frames, args.height, args.width)
    fastest: dict[str, object] = {}
    for round_ in range(args.repeat):
        cache = TransferCache()  # each round starts from a new shot
        for name, config, cached, prompt, subjects, overrides in modes(
            args.steps, args.guided_steps, args.step_cache, args.modes
        ):
            if args.device.startswith("cuda"):
                torch.cuda.empty_cache()
            out = flowmotion.transfer(
                pipe,
                video,
                prompt,
                config=config,
                generator=torch.Generator().manual_seed(0),
                cache=cache if cached else None,
                subject_mask=mask if subjects else None,
                runtime=RuntimeOptions(**overrides),
            )
            if name not in fastest or out.stats.seconds < fastest[name].seconds:
                fastest[name] = out.stats
            plan = "; ".join(f"{key} {choice}" for key, choice in out.stats.runtime.items())
            print(f"| {name} | round {round_ + 1} | {out.stats.summary()} | {plan} |", flush=True)
    return [{"mode": name, "stats": stats} for name, stats in fastest.items()], notes


def plan_cell(stats) -> str:
    """The plan's choices in short: batched CFG (B), text encoder offloaded (O), VAE tiled (T)."""
    letters = {"batch_guidance": "B", "offload_text_encoder": "O", "vae_tiling": "T"}
    chosen = [letter for key, letter in letters.items() if stats.runtime.get(key, "").startswith("on")]
    return "".join(chosen) or "-"


def table(rows: list[dict]) -> str:
    plain = next((row["stats"].seconds for row in rows if row["mode"] == "plain Wan sampling"), None)
    head = (
        ["mode", "passes", "calls", "plan"] + [label for _, label in PHASE_COLUMNS] + ["total s", "peak GiB", "x plain"]
    )
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        s = row["stats"]
        cells = [row["mode"], str(s.forward_passes), str(s.transformer_calls), plan_cell(s)]
        cells += [f"{s.phase_seconds.get(phase, 0.0):.2f}" for phase, _ in PHASE_COLUMNS]
        cells += [
            f"{s.seconds:.2f}",
            f"{s.peak_memory_bytes / 2**30:.2f}",
            f"{s.seconds / plain:.2f}" if plain else "-",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def describe(args) -> str:
    if args.device.startswith("cuda"):
        device = torch.cuda.get_device_name(torch.device(args.device))
        memory = "peak GiB: torch.cuda.max_memory_allocated per mode"
    else:
        device = f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
        memory = "peak GiB: the process's peak resident memory so far (not per mode)"
    model = (
        "Wan2.1-T2V-1.3B architecture, random weights"
        if args.size == "full"
        else "embedded model (flowmotion/embedded)"
    )
    import diffusers

    return (
        f"{datetime.date.today().isoformat()}, {device}, torch {torch.__version__}, "
        f"diffusers {diffusers.__version__}; {model}; "
        f"{args.width}x{args.height}, {args.frames} frames, {args.steps} steps ({args.guided_steps} guided); "
        f"{memory}" + (f"; each row the fastest of {args.repeat} rounds" if args.repeat > 1 else "")
    )


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
    parser.add_argument("--compile", action="store_true", help="regional compilation of the repeated block (all rows)")
    parser.add_argument("--fp8", action="store_true", help="FP8 linear layers in the transformer blocks (all rows)")
    parser.add_argument(
        "--modes", default=",".join(MODES), help=f"comma-separated rows to run, of {', '.join(MODES)} (default: all)"
    )
    parser.add_argument("--dry-run", action="store_true", help="print the rows and settings, run nothing")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="rounds of all rows, each from a new shot; the table keeps each row's fastest "
        "(for a shared machine; memory-saver's offload lasts into later rounds)",
    )
    parser.add_argument("--record", action="store_true", help="append the table to bench/RESULTS.md")
    args = parser.parse_args()
    args.modes = [name.strip() for name in args.modes.split(",") if name.strip()]
    unknown = [name for name in args.modes if name not in MODES]
    if unknown:
        parser.error(f"unknown mode {unknown[0]!r}; choose from {', '.join(MODES)}")
    full = args.size == "full"
    args.frames = args.frames or (49 if full else 17)
    args.height = args.height or (480 if full else 64)
    args.width = args.width or (720 if full else 96)

    header = describe(args)
    if args.dry_run:
        print(header)
        for name, config, cached, *_ in modes(args.steps, args.guided_steps, args.step_cache, args.modes):
            cached_passes = flowmotion.forward_pass_count(config, source_cached=True)
            again = f", {cached_passes} with the shot cached" if cached else ""
            print(f"  {name}: {flowmotion.forward_pass_count(config)} passes{again}")
        return
    rows, notes = measure(args)
    result = f"{header}\n\n{table(rows)}\n" + "".join(f"\nNote: {line}\n" for line in notes)
    print(result)
    if args.record:
        with open(Path(__file__).with_name("RESULTS.md"), "a") as results:
            results.write(f"\n### {result}")


if __name__ == "__main__":
    main()
