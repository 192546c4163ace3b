"""What live previews cost: the same run with a preview every step and without, on the CPU.

    python bench/preview_cost.py                   # embedded model, bench/speed.py's CPU shape
    python bench/preview_cost.py --repeats 3 --steps 20

Two hooks, each making a preview at every step (the most a job can make): the library's
(`flowmotion.preview.preview_hook`, every latent frame at full latent size) and the backend's
(`backend.previews.preview_hook` with no time spacing: up to 4 frames of at most 128 pixels a side,
put in the slot the server sends from; the backend's default spacing of a second makes fewer).
For each row's settings the runs alternate (none, library, backend, none, ...) so a load that
drifts on a shared machine falls on all alike. Prints the fastest seconds of each (the run least
disturbed by other work), their ratios, and the seconds spent inside each hook itself (the
preview's own work, the figure the machine's noise moves least). Not a test: the numbers are the
output.
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
from backend.previews import PreviewSlot  # noqa: E402
from backend.previews import preview_hook as backend_hook  # noqa: E402
from flowmotion import FlowMotionConfig, TransferRequest, run_transfer  # noqa: E402
from flowmotion.cache import TransferCache  # noqa: E402
from flowmotion.preview import latent_rgb_for, preview_hook  # noqa: E402


def rows(steps: int, guided: int):
    base = dict(num_inference_steps=steps, guided_steps=guided)
    yield "plain Wan sampling", FlowMotionConfig(motion_guidance=False, **base), False
    yield "optimised, re-prompt", FlowMotionConfig.optimized(**base), True


def one_run(pipe, request, hook=None) -> float:
    start = time.perf_counter()
    run_transfer(pipe, request, on_step=hook)
    return time.perf_counter() - start


def timed(hook, spent: list):
    """`hook`, adding the seconds it takes to the last entry of `spent`."""

    def run(info):
        start = time.perf_counter()
        hook(info)
        spent[-1] += time.perf_counter() - start

    return run


def measure(args) -> list[tuple]:
    pipe = flowmotion.load_pipeline("embedded", device="cpu")
    factors = latent_rgb_for(pipe)
    video, _ = source_video(args.frames, args.height, args.width)
    results = []
    for label, config, cached in rows(args.steps, args.guided_steps):
        cache = TransferCache()
        request = TransferRequest(
            video,
            "a red ball on grass",
            config=config,
            cache=cache if cached else None,
            generator=torch.Generator().manual_seed(0),
        )
        one_run(pipe, request)  # warms the caches and the allocator; not counted
        hooks = {
            "library": preview_hook(factors, lambda preview: None, every=1),
            "backend": backend_hook("bench", factors, PreviewSlot(), every=0.0),
        }
        seconds = {name: [] for name in ("none", *hooks)}
        in_hook = {name: [] for name in hooks}
        for _ in range(args.repeats):
            seconds["none"].append(one_run(pipe, request.replace(generator=torch.Generator().manual_seed(0))))
            for name, hook in hooks.items():
                in_hook[name].append(0.0)
                seconds[name].append(
                    one_run(
                        pipe, request.replace(generator=torch.Generator().manual_seed(0)), timed(hook, in_hook[name])
                    )
                )
        row = [label, min(seconds["none"])]
        for name in hooks:
            fastest = min(range(args.repeats), key=seconds[name].__getitem__)
            row += [seconds[name][fastest], in_hook[name][fastest]]
        results.append(tuple(row))
        print(f"{label}: {seconds}, in hook {in_hook}", flush=True)
    return results


def table(results) -> str:
    lines = [
        "| settings | none s | library hook s | x none | in hook | backend hook s | x none | in hook |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, plain, library, library_hook, backend, backend_in_hook in results:
        lines.append(
            f"| {name} | {plain:.2f} | {library:.2f} | {library / plain:.3f} | {library_hook / plain:.2%} | "
            f"{backend:.2f} | {backend / plain:.3f} | {backend_in_hook / plain:.2%} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--width", type=int, default=96)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--guided-steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    print(
        f"embedded model on the CPU ({torch.get_num_threads()} threads), {args.width}x{args.height}, "
        f"{args.frames} frames, {args.steps} steps ({args.guided_steps} guided); fastest of {args.repeats}"
    )
    print(table(measure(args)))


if __name__ == "__main__":
    main()
