"""Quality benchmark of FlowMotion on the embedded model: does the take keep the source's motion
and show the prompt?

    python bench/quality.py [--model embedded] [--videos 24] [--steps 50]

A fixed held-out set: source clips whose shapes (diamond, ring) and paths (circle, zigzag) the
model never saw in training, most of them Workbench-style playblasts, each with a target prompt
that changes colour, shape and background. For each mode the table gives motion fidelity (share
of frames whose object is within 5 px of the source's track, and the mean track error), text
adherence (colour, shape and background read back by flowmotion.toy.metrics' classifier),
temporal consistency, and seconds and forward passes per video. Every mode runs the paper's settings
through FlowMotionConfig.optimized() (the same result as the authors' pass structure up to float
rounding, in fewer passes); the unguided-step cache row measures what that cache costs in quality.
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
from flowmotion.toy.data import (BACKGROUNDS, COLORS, HELD_OUT_PATHS, HELD_OUT_SHAPES, TRAIN_SHAPES,  # noqa: E402
                                 Clip, make_clip, redraw)

HELD_OUT_SEED = 20261124
SUBJECT_MODES = ("FlowMotion + subject masks", "subject masks only (no LA, no DA)")


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
    base = FlowMotionConfig.optimized(num_inference_steps=steps, guided_steps=guided)
    return {
        "plain sampling (no guidance)": base.replace(motion_guidance=False),
        "FlowMotion": base,
        "without difference alignment": base.replace(difference_alignment=False),
        "without velocity regularisation": base.replace(velocity_regularization=False),
        "clean_latent source motion": base.replace(source_motion="clean_latent"),
        f"clean_latent source motion, learning rate {learning_rate:g}": base.replace(
            source_motion="clean_latent", learning_rate=learning_rate),
        "FlowMotion + unguided step cache 0.05": base.replace(unguided_step_cache=0.05),
        SUBJECT_MODES[0]: base,
        SUBJECT_MODES[1]: base.replace(latent_alignment_weight=0.0, difference_alignment_weight=0.0),
    }


def look_matched(cases: list[Case]) -> list[Case]:
    """The same cases, each source redrawn in its target prompt's look."""
    return [Case(redraw(c.source, c.color, c.shape, c.background), c.color, c.shape, c.background) for c in cases]


def look_matched_modes(steps: int, guided: int, learning_rate: float) -> dict[str, FlowMotionConfig]:
    """The modes that tell moving the object from crossing the look: the first table's, less the ablations."""
    kept = ("plain sampling (no guidance)", "FlowMotion", SUBJECT_MODES[0])
    return {name: config for name, config in modes(steps, guided, learning_rate).items()
            if name in kept or name.startswith("clean_latent")}


def evaluate(pipe, cases: list[Case], config: FlowMotionConfig, subject_masks: bool = False) -> dict:
    scores = {"fidelity": [], "error": [], "text": [], "temporal": [], "seconds": [], "passes": []}
    for index, case in enumerate(cases):
        out = flowmotion.transfer(pipe, case.source.frames, case.prompt, config=config,
                                  generator=torch.Generator().manual_seed(index),
                                  subject_mask=case.source.mask if subject_masks else None)
        share, error = metrics.motion_fidelity(out.frames, case.color, case.source.track)
        scores["fidelity"].append(share)
        scores["error"].append(error)
        scores["text"].append(metrics.text_adherence(out.frames, case.color, case.shape, case.background))
        scores["temporal"].append(metrics.temporal_consistency(out.frames))
        scores["seconds"].append(out.stats.seconds)
        scores["passes"].append(out.stats.forward_passes)
    return {name: float(np.mean(values)) for name, values in scores.items()}


def table(results: dict[str, dict]) -> str:
    head = ["mode", "motion fidelity", "track error px", "text adherence", "temporal consistency", "s / video",
            "passes"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in results.items():
        lines.append(f"| {name} | {r['fidelity']:.3f} | {r['error']:.2f} | {r['text']:.3f} | {r['temporal']:.3f} | "
                     f"{r['seconds']:.2f} | {r['passes']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=flowmotion.EMBEDDED_MODEL)
    parser.add_argument("--videos", type=int, default=24)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--guided-steps", type=int, default=10)
    parser.add_argument("--scaled-learning-rate", type=float, default=0.03,
                        help="the learning rate of the clean_latent rows that scale the paper's to the latent size")
    args = parser.parse_args()
    pipe = flowmotion.load_pipeline(args.model, device="cpu")
    cases = held_out_cases(args.videos)
    started = time.monotonic()
    results, matched, matched_cases = {}, {}, look_matched(cases)
    for name, config in modes(args.steps, args.guided_steps, args.scaled_learning_rate).items():
        results[name] = evaluate(pipe, cases, config, subject_masks=name in SUBJECT_MODES)
        print(f"  {name}: done ({time.monotonic() - started:.0f} s)", file=sys.stderr)
    for name, config in look_matched_modes(args.steps, args.guided_steps, args.scaled_learning_rate).items():
        matched[name] = evaluate(pipe, matched_cases, config, subject_masks=name in SUBJECT_MODES)
        print(f"  sources in the prompt's look, {name}: done ({time.monotonic() - started:.0f} s)", file=sys.stderr)
    print(f"{args.videos} held-out videos, model {args.model}, {args.steps} steps ({args.guided_steps} guided), "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print(table(results))
    print("\nThe same tracks, sources redrawn in the target prompt's colour, shape and background:\n")
    print(table(matched))


if __name__ == "__main__":
    main()
