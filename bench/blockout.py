"""Blockout benchmark: does the take follow a Blender shot the embedded model never saw?

    python bench/blockout.py [--shots 24] [--width 320 --height 192 --frames 17] [--steps 50]

Held-out shots rendered by Blender (`flowmotion.toy.blender_world`) from the seeds
`BENCHMARK_SEED_START` on, which no training set may use (training draws its shots from seeds
below it): the three kinds in turn, object motion under a static camera, object motion under a
moving camera, and camera-only moves over a static set. Each take starts from the shot's
playblast look (what the add-on sends) and its prompt is the shot's coloured caption, with a shape
the model was trained on standing in for a held-out one (diamond, ring).

Metrics:
- object shots: per frame where the playblast shows the subject, the distance (pixels) from the
  playblast subject's mask centroid to the take's subject (pixels near the prompt's colour; a frame
  without one counts as the frame's half-diagonal), against two baselines on the same frames, a blob
  parked at the subject's mean position and one at the frame centre; "to better baseline" is the
  take's mean distance over the better baseline's (below 1 is following, the issue's goal 0.5);
- camera shots: the share of moving-camera frame pairs in which the take's global motion (tiled
  phase correlation between consecutive frames, `flowmotion.toy.metrics.camera_agreement`) points
  the playblast's way, and the share of shots where that holds in most frames;
- text adherence as bench/quality.py measures it.

A reference row scores the shot's own coloured render as if it were the take: what a take that
follows perfectly would reach under these metrics. Not a test: the table is the output.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from quality import SUBJECT_MODES, modes  # noqa: E402

import flowmotion  # noqa: E402
from flowmotion.loading import EMBEDDED_MAX_AREA  # noqa: E402
from flowmotion.toy import blender_world, metrics  # noqa: E402
from flowmotion.toy.data import TRAIN_SHAPES  # noqa: E402

REFERENCE = "reference: the shot's own coloured render"
ROWS = ("plain sampling (no guidance)", "FlowMotion", *SUBJECT_MODES)
OBJECT_KINDS = ("object", "object+camera")


@dataclass(frozen=True)
class BlockoutShot:
    """A held-out shot and the take it asks for."""

    seed: int
    kind: str
    playblast: np.ndarray
    scene: np.ndarray
    mask: np.ndarray
    color: str
    shape: str
    background: str

    @property
    def prompt(self) -> str:
        return f"a {self.color} {self.shape} on {self.background}"

    @property
    def has_subject(self) -> bool:
        return self.kind in OBJECT_KINDS and bool(self.mask.any())


def held_out_seeds(count: int, first: int = blender_world.BENCHMARK_SEED_START) -> range:
    if first < blender_world.BENCHMARK_SEED_START:
        raise ValueError(f"benchmark seeds start at {blender_world.BENCHMARK_SEED_START}: lower ones are for training")
    return range(first, first + count)


def held_out_shots(seeds, width: int, height: int, frames: int) -> list[BlockoutShot]:
    shots = []
    for seed in seeds:
        shot = blender_world.render_shot(blender_world.shot_spec(seed, frames), width, height)
        spec = shot.spec
        shape = spec.shape if spec.shape in TRAIN_SHAPES else TRAIN_SHAPES[seed % len(TRAIN_SHAPES)]
        shots.append(BlockoutShot(seed, spec.kind, shot.playblast, shot.scene, shot.mask, spec.color, shape,
                                  spec.background))
    return shots


def subject_track(shot: BlockoutShot) -> tuple[np.ndarray, np.ndarray]:
    """The frames where the playblast shows its subject, and the subject's centroid in each."""
    found = [(index, metrics.centroid(mask)) for index, mask in enumerate(shot.mask)]
    found = [(index, point) for index, point in found if point is not None]
    return np.array([index for index, _ in found], int), np.array([point for _, point in found])


def baseline_distances(shot: BlockoutShot) -> dict[str, float]:
    """Mean distance from the subject of blobs that do not follow it: parked at its mean position,
    and at the frame centre, over the frames where the subject shows."""
    _, track = subject_track(shot)
    height, width = shot.mask.shape[1:]
    centre = np.array([width / 2, height / 2])
    return {"mean position": float(np.linalg.norm(track - track.mean(axis=0), axis=1).mean()),
            "frame centre": float(np.linalg.norm(track - centre, axis=1).mean())}


def subject_distance(take: np.ndarray, shot: BlockoutShot) -> float:
    frames, track = subject_track(shot)
    return float(metrics.track_errors(take[frames], shot.color, track).mean())


def score(take: np.ndarray, shot: BlockoutShot) -> dict:
    """The metrics of one take of one shot (keys missing where they do not apply)."""
    take = metrics.as_uint8(take)
    result = {"text": metrics.text_adherence(take, shot.color, shot.shape, shot.background)}
    if shot.has_subject:
        result["distance"] = subject_distance(take, shot)
    if shot.kind == "camera":
        result["camera"] = metrics.camera_agreement(take, shot.playblast)
    return result


def evaluate(pipe, shots: list[BlockoutShot], config, subject_masks: bool, max_area: int) -> list[dict]:
    scores = []
    for index, shot in enumerate(shots):
        mask = shot.mask if subject_masks and shot.has_subject else None
        out = flowmotion.transfer(pipe, shot.playblast, shot.prompt, config=config, max_area=max_area,
                                  generator=torch.Generator().manual_seed(index), subject_mask=mask)
        scores.append({**score(out.frames, shot), "seconds": out.stats.seconds})
    return scores


def summarise(shots: list[BlockoutShot], scores: list[dict]) -> dict:
    """Means over the shots of each kind."""
    def mean(key, kinds):
        values = [
            s[key] for shot, s in zip(shots, scores, strict=True) if shot.kind in kinds and s.get(key) is not None
        ]
        return float(np.mean(values)) if values else float("nan")

    better = [min(baseline_distances(shot).values()) for shot in shots if shot.has_subject]
    distances = [s["distance"] for shot, s in zip(shots, scores, strict=True) if shot.has_subject]
    cameras = [
        s["camera"] for shot, s in zip(shots, scores, strict=True) if shot.kind == "camera" and s["camera"] is not None
    ]
    return {"static": mean("distance", ("object",)), "moving": mean("distance", ("object+camera",)),
            "ratio": float(np.mean(distances) / np.mean(better)) if distances else float("nan"),
            "camera": float(np.mean(cameras)) if cameras else float("nan"),
            "camera_most": float(np.mean([c > 0.5 for c in cameras])) if cameras else float("nan"),
            "text": mean("text", ("object", "object+camera", "camera")),
            "seconds": mean("seconds", ("object", "object+camera", "camera"))}


def baseline_rows(shots: list[BlockoutShot]) -> dict[str, dict]:
    rows = {}
    for name in ("mean position", "frame centre"):
        values = {kind: [baseline_distances(s)[name] for s in shots if s.kind == kind and s.has_subject]
                  for kind in OBJECT_KINDS}
        everything = [baseline_distances(s)[name] for s in shots if s.has_subject]
        better = [min(baseline_distances(s).values()) for s in shots if s.has_subject]
        rows[f"baseline: blob parked at the {name}"] = {
            "static": float(np.mean(values["object"])) if values["object"] else float("nan"),
            "moving": float(np.mean(values["object+camera"])) if values["object+camera"] else float("nan"),
            "ratio": float(np.mean(everything) / np.mean(better)) if better else float("nan")}
    return rows


def table(rows: dict[str, dict]) -> str:
    head = ["mode", "subject distance px, static camera", "subject distance px, moving camera", "to better baseline",
            "camera followed, frames", "camera followed in most frames, shots", "text adherence", "s / video"]
    keys = ("static", "moving", "ratio", "camera", "camera_most", "text", "seconds")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row in rows.items():
        cells = [("-" if key not in row or np.isnan(row[key]) else f"{row[key]:.{1 if key in keys[:2] else 3}f}")
                 for key in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run(pipe, shots: list[BlockoutShot], steps: int, guided: int, max_area: int, on_mode=None) -> dict[str, dict]:
    """Every row of the table: the baselines, the reference, then each mode's takes."""
    rows = baseline_rows(shots)
    reference = [score(shot.scene, shot) for shot in shots]
    rows[REFERENCE] = {k: v for k, v in summarise(shots, [{**s, "seconds": 0.0} for s in reference]).items()
                       if k != "seconds"}
    configs = modes(steps, guided, 0.03)
    for name in ROWS:
        scores = evaluate(pipe, shots, configs[name], name in SUBJECT_MODES, max_area)
        rows[name] = summarise(shots, scores)
        if on_mode is not None:
            on_mode(name)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=flowmotion.EMBEDDED_MODEL)
    parser.add_argument("--shots", type=int, default=24)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=192)
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--guided-steps", type=int, default=10)
    parser.add_argument("--max-area", type=int, default=EMBEDDED_MAX_AREA,
                        help="pixels per frame the model works at (default: the embedded model's)")
    args = parser.parse_args()
    started = time.monotonic()
    shots = held_out_shots(held_out_seeds(args.shots), args.width, args.height, args.frames)
    rendered = time.monotonic() - started
    print(f"  {len(shots)} shots rendered ({rendered:.0f} s)", file=sys.stderr)
    pipe = flowmotion.load_pipeline(args.model, device="cpu")
    rows = run(pipe, shots, args.steps, args.guided_steps, args.max_area,
               on_mode=lambda name: print(f"  {name}: done ({time.monotonic() - started:.0f} s)", file=sys.stderr))
    kinds = {kind: sum(shot.kind == kind for shot in shots) for kind in blender_world.KINDS}
    print(f"{len(shots)} held-out Blender shots (seeds {shots[0].seed}-{shots[-1].seed}; "
          + ", ".join(f"{count} {kind}" for kind, count in kinds.items())
          + f"), {args.width}x{args.height}, {args.frames} frames, model {args.model} at max area {args.max_area}, "
          f"{args.steps} steps ({args.guided_steps} guided), torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; rendering {rendered / (len(shots) * args.frames):.3f} s a frame "
          "(both looks and the mask)\n")
    print(table(rows))


if __name__ == "__main__":
    main()
