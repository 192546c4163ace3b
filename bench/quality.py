"""Quality benchmark of FlowMotion on the embedded model: does the take keep the source's motion
and show the prompt?

    python bench/quality.py [--model embedded] [--videos 24] [--steps 50]
    python bench/quality.py --list-modes
    python bench/quality.py --mode FlowMotion --mode "FlowMotion, velocity reused" --seed-offset 100

A fixed held-out set: source clips whose shapes (diamond, ring) and paths (circle, zigzag) the
model never saw in training, most of them Workbench-style playblasts, each with a target prompt
that changes colour, shape and background. For each mode the table gives motion fidelity (share
of frames whose object is within 5 px of the source's track, and the mean track error), text
adherence (colour, shape and background read back by flowmotion.toy.metrics' classifier),
temporal consistency, and seconds and forward passes per video. Every mode runs the paper's settings
with one source pass per guided step and CFG batched (the same result as the authors' pass structure
up to float rounding, in fewer passes); the unguided-step cache and velocity-reuse rows measure what
those speed-ups cost in quality. `--mode` (repeatable) runs only the named rows, `--seed-offset`
draws other seeds for the same cases (to see the run-to-run spread).
The subject-mask rows give the method each source's object mask (what the add-on renders from the
shot) and add Subject Alignment; the last of them drops the paper's two losses to show its share.

A second table separates the method from the look of a playblast: the same tracks, the sources
redrawn in the target prompt's colour, shape and background (`flowmotion.toy.data.redraw`), so
the only thing the take has to get from its source is the motion.
Not a test: the tables are the output.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import flowmotion  # noqa: E402
from flowmotion import FlowMotionConfig  # noqa: E402
from flowmotion.toy import metrics  # noqa: E402
from flowmotion.toy.data import (  # noqa: E402
    BACKGROUNDS,
    COLORS,
    HELD_OUT_PATHS,
    HELD_OUT_SHAPES,
    TRAIN_SHAPES,
    Clip,
    make_clip,
    redraw,
)

HELD_OUT_SEED = 20261124
SUBJECT_MODES = (
    "FlowMotion + subject masks",
    "subject masks only (no LA, no DA)",
    "FlowMotion + subject masks, velocity reused across iterations",
    "FlowMotion + subject masks, velocity reused across iterations and for the Euler step",
    "FlowMotion + subject masks, alignment only (no subject placement)",
)
REUSED = dict(reuse_velocity_across_iterations=True)
REUSED_FOR_EULER = dict(reuse_velocity_across_iterations=True, reuse_velocity_for_euler_step=True)


@dataclass(frozen=True)
class Case:
    source: Clip
    color: str
    shape: str
    background: str

    @property
    def prompt(self) -> str:
        return f"a {self.color} {self.shape} on {self.background}"


def held_out_cases(count: int) -> list[Case]:
    rng = np.random.default_rng(HELD_OUT_SEED)
    cases = []
    for index in range(count):
        background = "playblast" if index % 3 else str(rng.choice(list(BACKGROUNDS)))
        source = make_clip(rng, shapes=HELD_OUT_SHAPES, paths=HELD_OUT_PATHS, background=background)
        target_background = str(rng.choice([b for b in BACKGROUNDS if b != source.background]))
        target_color = str(rng.choice([c for c in COLORS if c != source.color]))
        cases.append(Case(source, target_color, str(rng.choice(TRAIN_SHAPES)), target_background))
    return cases


def modes(steps: int, guided: int, learning_rate: float) -> dict[str, FlowMotionConfig]:
    base = FlowMotionConfig(
        num_inference_steps=steps, guided_steps=guided, skip_identical_source_cfg=True, batch_guidance=True
    )
    return {
        "plain sampling (no guidance)": base.replace(motion_guidance=False),
        "FlowMotion": base,
        "without difference alignment": base.replace(difference_alignment=False),
        "without velocity regularisation": base.replace(velocity_regularization=False),
        "clean_latent source motion": base.replace(source_motion="clean_latent"),
        f"clean_latent source motion, learning rate {learning_rate:g}": base.replace(
            source_motion="clean_latent", learning_rate=learning_rate
        ),
        "FlowMotion + unguided step cache 0.05": base.replace(unguided_step_cache=0.05),
        SUBJECT_MODES[0]: base,
        SUBJECT_MODES[1]: base.replace(latent_alignment_weight=0.0, difference_alignment_weight=0.0),
        "FlowMotion, velocity reused across iterations": base.replace(**REUSED),
        "FlowMotion, velocity reused across iterations and for the Euler step": base.replace(**REUSED_FOR_EULER),
        SUBJECT_MODES[2]: base.replace(**REUSED),
        SUBJECT_MODES[3]: base.replace(**REUSED_FOR_EULER),
        SUBJECT_MODES[4]: base.replace(subject_placements=0),
    }


def look_matched(cases: list[Case]) -> list[Case]:
    """The same cases, each source redrawn in its target prompt's look."""
    return [Case(redraw(c.source, c.color, c.shape, c.background), c.color, c.shape, c.background) for c in cases]


def look_matched_modes(steps: int, guided: int, learning_rate: float) -> dict[str, FlowMotionConfig]:
    """The modes that tell moving the object from crossing the look: the first table's, less the ablations."""
    kept = ("plain sampling (no guidance)", "FlowMotion", SUBJECT_MODES[0])
    return {
        name: config
        for name, config in modes(steps, guided, learning_rate).items()
        if name in kept or name.startswith("clean_latent")
    }


def evaluate(
    pipe, cases: list[Case], config: FlowMotionConfig, subject_masks: bool = False, seed_offset: int = 0
) -> dict:
    scores = {"fidelity": [], "error": [], "text": [], "temporal": [], "seconds": [], "passes": []}
    for index, case in enumerate(cases):
        out = flowmotion.transfer(
            pipe,
            case.source.frames,
            case.prompt,
            config=config,
            generator=torch.Generator().manual_seed(index + seed_offset),
            subject_mask=case.source.mask if subject_masks else None,
        )
        share, error = metrics.motion_fidelity(out.frames, case.color, case.source.track)
        scores["fidelity"].append(share)
        scores["error"].append(error)
        scores["text"].append(metrics.text_adherence(out.frames, case.color, case.shape, case.background))
        scores["temporal"].append(metrics.temporal_consistency(out.frames))
        scores["seconds"].append(out.stats.seconds)
        scores["passes"].append(out.stats.forward_passes)
    return {name: float(np.mean(values)) for name, values in scores.items()}


def table(results: dict[str, dict]) -> str:
    head = [
        "mode",
        "motion fidelity",
        "track error px",
        "text adherence",
        "temporal consistency",
        "s / video",
        "passes",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['fidelity']:.3f} | {r['error']:.2f} | {r['text']:.3f} | {r['temporal']:.3f} | "
            f"{r['seconds']:.2f} | {r['passes']:.0f} |"
        )
    return "\n".join(lines)


def selected(all_modes: dict[str, FlowMotionConfig], names: list[str] | None) -> dict[str, FlowMotionConfig]:
    """The modes named in `names` (all of them when None), in the table's order."""
    if not names:
        return all_modes
    return {name: config for name, config in all_modes.items() if name in names}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=flowmotion.EMBEDDED_MODEL)
    parser.add_argument("--videos", type=int, default=24)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--guided-steps", type=int, default=10)
    parser.add_argument(
        "--scaled-learning-rate",
        type=float,
        default=0.03,
        help="the learning rate of the clean_latent rows that scale the paper's to the latent size",
    )
    parser.add_argument(
        "--mode",
        action="append",
        default=None,
        metavar="NAME",
        help="run only this row (repeatable; names as --list-modes prints them)",
    )
    parser.add_argument("--list-modes", action="store_true", help="print the rows' names and stop")
    parser.add_argument("--first-table-only", action="store_true", help="skip the look-matched sources' table")
    parser.add_argument("--seed-offset", type=int, default=0, help="added to every case's seed (default: 0)")
    args = parser.parse_args()
    first = modes(args.steps, args.guided_steps, args.scaled_learning_rate)
    second = look_matched_modes(args.steps, args.guided_steps, args.scaled_learning_rate)
    if args.list_modes:
        print("\n".join(first))
        return
    unknown = set(args.mode or ()) - set(first)
    if unknown:
        parser.error(f"unknown mode {sorted(unknown)[0]!r}; --list-modes prints the names")
    pipe = flowmotion.load_pipeline(args.model, device="cpu")
    cases = held_out_cases(args.videos)
    started = time.monotonic()
    results, matched, matched_cases = {}, {}, look_matched(cases)
    for name, config in selected(first, args.mode).items():
        results[name] = evaluate(pipe, cases, config, name in SUBJECT_MODES, args.seed_offset)
        print(f"  {name}: done ({time.monotonic() - started:.0f} s)", file=sys.stderr)
    for name, config in selected({} if args.first_table_only else second, args.mode).items():
        matched[name] = evaluate(pipe, matched_cases, config, name in SUBJECT_MODES, args.seed_offset)
        print(f"  sources in the prompt's look, {name}: done ({time.monotonic() - started:.0f} s)", file=sys.stderr)
    print(
        f"{args.videos} held-out videos, model {args.model}, {args.steps} steps ({args.guided_steps} guided), "
        f"seeds from {args.seed_offset}, torch {torch.__version__}, {torch.get_num_threads()} threads\n"
    )
    print(table(results))
    if matched:
        print("\nThe same tracks, sources redrawn in the target prompt's colour, shape and background:\n")
        print(table(matched))


if __name__ == "__main__":
    main()
