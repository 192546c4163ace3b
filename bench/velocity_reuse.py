"""How far reusing a guided step's velocity moves the result: each variant's final latent against the
faithful path's, from the same noise, next to two yardsticks.

    python bench/velocity_reuse.py                     # the tiny test model and the embedded model, CPU
    python bench/velocity_reuse.py --size full --steps 20 --seeds 1   # Wan2.1-T2V-1.3B shapes on CUDA

For every seed and model the faithful path (the authors' pass structure) runs once; every other row
gives the mean relative difference |z - z_faithful| / |z_faithful| of its final latent. Yardsticks:
batching CFG changes only float rounding; plain sampling (no guidance at all) shows how far the whole
method moves the latent, so a variant's difference is read as a share of the method's own effect.
Not a test: the table is the output.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from speed import source_video  # noqa: E402

import flowmotion  # noqa: E402
from flowmotion import FlowMotionConfig  # noqa: E402

FAITHFUL_RESULT = dict(skip_identical_source_cfg=True)  # same result as the authors' 180 passes, bit for bit


def variants(steps: int, guided: int) -> dict[str, FlowMotionConfig]:
    base = FlowMotionConfig(num_inference_steps=steps, guided_steps=guided, batch_guidance=False)
    return {
        "CFG batched (float rounding only)": base.replace(batch_guidance=True, **FAITHFUL_RESULT),
        "velocity reused across iterations": base.replace(reuse_velocity_across_iterations=True, **FAITHFUL_RESULT),
        "velocity reused across iterations and for the Euler step": base.replace(
            reuse_velocity_across_iterations=True, reuse_velocity_for_euler_step=True, **FAITHFUL_RESULT
        ),
        "velocity reused for the Euler step only": base.replace(reuse_velocity_for_euler_step=True, **FAITHFUL_RESULT),
        "plain sampling (the method's own effect)": base.replace(motion_guidance=False),
    }


def relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


def pipelines(size: str, device: str):
    """(name, pipe, frames, height, width, max_area) for each model to measure."""
    if size == "full":
        from wan_full_size import build_full_size_pipeline

        yield "Wan2.1-T2V-1.3B architecture, random weights", build_full_size_pipeline(device), 49, 480, 720, None
        return
    from flowmotion.tiny import build_tiny_pipeline

    yield "tiny test model (random weights)", build_tiny_pipeline(), 9, 32, 48, None
    yield (
        "embedded model",
        flowmotion.load_pipeline(flowmotion.EMBEDDED_MODEL, device=device),
        17,
        32,
        32,
        flowmotion.loading.EMBEDDED_MAX_AREA,
    )


def measure(args) -> list[tuple[str, str, int, float]]:
    rows = []
    for model, pipe, frames, height, width, max_area in pipelines(args.size, args.device):
        video, _ = source_video(frames, height, width)
        faithful = FlowMotionConfig(num_inference_steps=args.steps, guided_steps=args.guided_steps)
        differences: dict[str, list[float]] = {}
        passes: dict[str, int] = {}
        for seed in range(args.seeds):

            def run(config, pipe=pipe, video=video, max_area=max_area, seed=seed):
                return flowmotion.transfer(
                    pipe,
                    video,
                    "a red ball on grass",
                    config=config,
                    max_area=max_area,
                    generator=torch.Generator().manual_seed(seed),
                    output_type="latent",
                )

            reference = run(faithful).frames
            for name, config in variants(args.steps, args.guided_steps).items():
                out = run(config)
                differences.setdefault(name, []).append(relative_difference(out.frames, reference))
                passes[name] = out.stats.forward_passes
            print(f"  {model}, seed {seed}: done", file=sys.stderr)
        rows.append((model, "faithful (the authors' pass structure)", flowmotion.forward_pass_count(faithful), 0.0))
        rows += [(model, name, passes[name], sum(d) / len(d)) for name, d in differences.items()]
    return rows


def table(rows) -> str:
    lines = ["| model | mode | passes | relative difference to faithful |", "|---|---|---|---|"]
    lines += [f"| {model} | {name} | {passes} | {difference:.4f} |" for model, name, passes, difference in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--size",
        choices=["small", "full"],
        default="small",
        help="small: the tiny and embedded models; full: Wan2.1-T2V-1.3B's shapes (CUDA)",
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--guided-steps", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=4)
    args = parser.parse_args()
    print(
        f"{args.steps} steps ({args.guided_steps} guided), {args.seeds} seeds, {args.device}, "
        f"torch {torch.__version__}\n"
    )
    print(table(measure(args)))


if __name__ == "__main__":
    main()
