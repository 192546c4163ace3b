"""What live previews cost: the same run with a preview every step and without, on the CPU.

    python bench/preview_cost.py                   # embedded model, bench/speed.py's CPU shape
    python bench/preview_cost.py --repeats 3 --steps 20

For each row's settings the runs alternate (none, preview, none, preview, ...) so a load that drifts
on a shared machine falls on both alike. Prints the fastest seconds of each (the run least disturbed
by other work), their ratio, and the seconds spent inside the preview hook itself in that run (the
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


def measure(args) -> list[tuple]:
    pipe = flowmotion.load_pipeline("embedded", device="cpu")
    factors = latent_rgb_for(pipe)
    video, _ = source_video(args.frames, args.height, args.width)
    results = []
    for name, config, cached in rows(args.steps, args.guided_steps):
        cache = TransferCache()
        request = TransferRequest(video, "a red ball on grass", config=config, cache=cache if cached else None,
                                  generator=torch.Generator().manual_seed(0))
        one_run(pipe, request)  # warms the caches and the allocator; not counted
        plain, previewed, in_hook, sent = [], [], [], []

        def send(preview, sent=sent):
            sent.append(preview.frames.shape)

        hook = preview_hook(factors, send, every=1)

        def timed_hook(info, hook=hook, in_hook=in_hook):
            start = time.perf_counter()
            hook(info)
            in_hook[-1] += time.perf_counter() - start

        for _ in range(args.repeats):
            plain.append(one_run(pipe, request.replace(generator=torch.Generator().manual_seed(0))))
            in_hook.append(0.0)
            previewed.append(one_run(pipe, request.replace(generator=torch.Generator().manual_seed(0)), timed_hook))
        fastest = min(range(args.repeats), key=previewed.__getitem__)
        results.append((name, min(plain), previewed[fastest], in_hook[fastest], len(sent) // args.repeats, sent[-1]))
        print(f"{name}: none {plain}, preview {previewed}, in hook {in_hook}", flush=True)
    return results


def table(results) -> str:
    lines = ["| settings | previews | preview size | none s | preview every step s | x none | in hook s | hook share |",
             "|---|---|---|---|---|---|---|---|"]
    for name, plain, previewed, in_hook, count, shape in results:
        size = "x".join(str(n) for n in shape[:3])
        lines.append(f"| {name} | {count} | {size} | {plain:.2f} | {previewed:.2f} | {previewed / plain:.3f} | "
                     f"{in_hook:.3f} | {in_hook / plain:.2%} |")
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
    print(f"embedded model on the CPU ({torch.get_num_threads()} threads), {args.width}x{args.height}, "
          f"{args.frames} frames, {args.steps} steps ({args.guided_steps} guided); fastest of {args.repeats}")
    print(table(measure(args)))


if __name__ == "__main__":
    main()
