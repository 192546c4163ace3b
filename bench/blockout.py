"""Blockout benchmark: does the take follow a Blender shot the embedded model never saw?

    python bench/blockout.py [--shots 24] [--width 320 --height 192 --frames 17] [--steps 50]
    python bench/blockout.py --shots-dir DIR [--device cuda]

Held-out shots are rendered here with Blender, or read from a folder that
`python -m flowmotion.toy.blender_world --out DIR --seed 1000000 --count 24` wrote (`--shots-dir`),
so that the benchmark runs on a GPU machine without Blender; such a folder may hold only seeds
from `BENCHMARK_SEED_START` on, and the benchmark refuses it otherwise.

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
  take's mean distance over the better baseline's (below 1 is following, the benchmark's goal
  0.5); beside it, the share of those frames where the take shows no subject of the prompt's colour,
  and the distance to the better baseline over the frames where it shows one: a subject drawn in
  another colour weighs in the first, a subject drawn elsewhere in the second; and the distance in
  the first frame that shows the subject alone, the frame Wan-family VAEs encode by itself;
- camera shots: the share of moving-camera frame pairs in which the take's global motion (tiled
  phase correlation between consecutive frames, `flowmotion.toy.metrics.camera_agreement`) points
  the playblast's way, and the share of shots where that holds in most frames;
- text adherence as bench/quality.py measures it.

The row without camera placement is "FlowMotion + subject masks" with Camera Placement off: the
two differ only on the camera-only shots, which come without masks.

A reference row scores the shot's own coloured render as if it were the take: what a take that
follows perfectly would reach under these metrics. A second one scores that render after a round
trip through the model's VAE at the working area (`flowmotion.round_trip`): what the model can
carry of the shot at best, so the ceiling of every take below. The last row repeats the best
variant of the method (the lowest subject distance to the better baseline; the most camera frames
followed where no shot has a subject) and names it. `--mode` runs only the named modes' takes (the
baselines and references always come). Not a test: the Markdown table is the output.
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
from flowmotion.loading import max_area_for  # noqa: E402
from flowmotion.toy import blender_world, metrics  # noqa: E402
from flowmotion.toy.data import TRAIN_SHAPES  # noqa: E402

REFERENCE = "reference: the shot's own coloured render"
ROUND_TRIP = "reference: the coloured render through the model's VAE"
PLAIN = "plain sampling (no guidance)"
NO_CAMERA = "FlowMotion + subject masks, no camera placement"
ROWS = (PLAIN, "FlowMotion", *SUBJECT_MODES, NO_CAMERA)
BEST = "best variant: "
OBJECT_KINDS = ("object", "object+camera")


class BlockoutError(ValueError):
    """The benchmark's shots cannot be used; the message says why and what to do."""


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
        return self.kind in OBJECT_KINDS and any(metrics.centroid(mask) is not None for mask in self.mask)


def held_out_seeds(count: int, first: int = blender_world.BENCHMARK_SEED_START) -> range:
    if first < blender_world.BENCHMARK_SEED_START:
        raise BlockoutError(
            f"benchmark seeds start at {blender_world.BENCHMARK_SEED_START}: lower ones are for training"
        )
    return range(first, first + count)


def _asked_shape(seed: int, shape: str) -> str:
    """The prompt's shape: the shot's own, or a trained one standing in for a held-out one."""
    return shape if shape in TRAIN_SHAPES else TRAIN_SHAPES[seed % len(TRAIN_SHAPES)]


def held_out_shots(seeds, width: int, height: int, frames: int) -> list[BlockoutShot]:
    """Render the shots of `seeds` with Blender."""
    shots = []
    for seed in seeds:
        shot = blender_world.render_shot(blender_world.shot_spec(seed, frames), width, height)
        spec = shot.spec
        shots.append(
            BlockoutShot(
                seed,
                spec.kind,
                shot.playblast,
                shot.scene,
                shot.mask,
                spec.color,
                _asked_shape(seed, spec.shape),
                spec.background,
            )
        )
    return shots


def shots_from_folder(folder: Path) -> list[BlockoutShot]:
    """The shots that `blender_world.write_shots` left in `folder`, all of them held out: a shot
    drawn from a training seed would score the model on what it learnt, so none is taken."""
    write = (
        f"write the shots with python -m flowmotion.toy.blender_world --out {folder} --seed "
        f"{blender_world.BENCHMARK_SEED_START} --count 24"
    )
    if not (Path(folder) / "shots.json").is_file():
        raise BlockoutError(f"{folder} holds no shots.json: {write}")
    try:
        rendered = blender_world.load_shots(folder)
    except (OSError, KeyError, ValueError) as error:
        raise BlockoutError(f"the shots in {folder} cannot be read ({error}): {write}") from None
    training = sorted(entry["seed"] for entry, _ in rendered if entry["seed"] < blender_world.BENCHMARK_SEED_START)
    if training:
        raise BlockoutError(
            f"{folder} holds shots of training seeds ({', '.join(map(str, training[:5]))}"
            f"{' ...' if len(training) > 5 else ''}): the benchmark takes only seeds from "
            f"{blender_world.BENCHMARK_SEED_START} on, which no training set uses"
        )
    if not rendered:
        raise BlockoutError(f"{folder} holds no shots")
    return [
        BlockoutShot(
            entry["seed"],
            entry["kind"],
            arrays["playblast"],
            arrays["scene"],
            arrays["mask"],
            entry["color"],
            _asked_shape(entry["seed"], entry["shape"]),
            entry["background"],
        )
        for entry, arrays in rendered
    ]


def subject_track(shot: BlockoutShot) -> tuple[np.ndarray, np.ndarray]:
    """The frames where the playblast shows its subject, and the subject's centroid in each."""
    return metrics.subject_track(shot.mask)


def baseline_frame_distances(shot: BlockoutShot) -> dict[str, np.ndarray]:
    """Distance from the subject of blobs that do not follow it, parked at its mean position and at
    the frame centre, in each frame where the subject shows."""
    _, track = subject_track(shot)
    height, width = shot.mask.shape[1:]
    return metrics.parked_distances(track, width, height)


def baseline_distances(shot: BlockoutShot) -> dict[str, float]:
    """The same blobs' mean distance from the subject over the frames where it shows."""
    return {name: float(distances.mean()) for name, distances in baseline_frame_distances(shot).items()}


def score(take: np.ndarray, shot: BlockoutShot) -> dict:
    """The metrics of one take of one shot (keys missing where they do not apply): for a shot with a
    subject, besides the distance, the share of its frames where the take shows no subject of the
    prompt's colour ("missing") and the distance over the frames where it shows one ("found", None
    where it shows none), which tell a subject drawn elsewhere from one drawn in another colour, and
    the distance in the first frame that shows the shot's subject ("first"), which Wan-family VAEs
    encode alone."""
    take = metrics.as_uint8(take)
    result = {"text": metrics.text_adherence(take, shot.color, shot.shape, shot.background)}
    if shot.has_subject:
        following = metrics.subject_following(take, shot.mask, shot.color)
        result.update(
            distance=following.take,
            missing=following.missing,
            found=following.where_found,
            first=float(following.per_frame[0]),
        )
    if shot.kind == "camera":
        result["camera"] = metrics.camera_agreement(take, shot.playblast)
    return result


TAKE_SEED_STRIDE = 1000
"""The k-th take of the shot at index i is sampled with generator seed i + k * TAKE_SEED_STRIDE."""


def take_seed(index: int, take: int) -> int:
    return index + take * TAKE_SEED_STRIDE


def mean_scores(takes: list[dict]) -> dict:
    """One shot's scores averaged over its takes (a metric missing from every take stays missing)."""
    keys = {key for take in takes for key in take}
    means = {}
    for key in keys:
        values = [take[key] for take in takes if take.get(key) is not None]
        means[key] = float(np.mean(values)) if values else None
    return means


def evaluate(
    pipe, shots: list[BlockoutShot], config, subject_masks: bool, max_area: int | None, takes_per_shot: int = 1
) -> list[dict]:
    """Each shot's scores, averaged over `takes_per_shot` takes from different generator seeds: single
    takes scatter by tens of pixels, and more takes a shot make two settings' rows comparable."""
    scores = []
    for index, shot in enumerate(shots):
        mask = shot.mask if subject_masks and shot.has_subject else None
        takes = []
        for take in range(takes_per_shot):
            out = flowmotion.transfer(
                pipe,
                shot.playblast,
                shot.prompt,
                config=config,
                max_area=max_area,
                generator=torch.Generator().manual_seed(take_seed(index, take)),
                subject_mask=mask,
            )
            takes.append({**score(out.frames, shot), "seconds": out.stats.seconds})
        scores.append(mean_scores(takes))
    return scores


def summarise(shots: list[BlockoutShot], scores: list[dict]) -> dict:
    """Means over the shots of each kind."""

    def mean(key, kinds):
        values = [
            s[key] for shot, s in zip(shots, scores, strict=True) if shot.kind in kinds and s.get(key) is not None
        ]
        return float(np.mean(values)) if values else float("nan")

    subjects = [
        (s, min(baseline_distances(shot).values())) for shot, s in zip(shots, scores, strict=True) if shot.has_subject
    ]
    better = [b for _, b in subjects]
    distances = [s["distance"] for s, _ in subjects]
    shown = [(s["found"], b) for s, b in subjects if s.get("found") is not None]
    shown_ratio = np.mean([f for f, _ in shown]) / np.mean([b for _, b in shown]) if shown else np.nan
    cameras = [
        s["camera"] for shot, s in zip(shots, scores, strict=True) if shot.kind == "camera" and s["camera"] is not None
    ]
    return {
        "static": mean("distance", ("object",)),
        "moving": mean("distance", ("object+camera",)),
        "first": mean("first", OBJECT_KINDS),
        "ratio": float(np.mean(distances) / np.mean(better)) if distances else float("nan"),
        "missing": mean("missing", OBJECT_KINDS),
        "shown_ratio": float(shown_ratio),
        "camera": float(np.mean(cameras)) if cameras else float("nan"),
        "camera_most": float(np.mean([c > 0.5 for c in cameras])) if cameras else float("nan"),
        "text": mean("text", ("object", "object+camera", "camera")),
        "seconds": mean("seconds", ("object", "object+camera", "camera")),
    }


def baseline_rows(shots: list[BlockoutShot]) -> dict[str, dict]:
    rows = {}
    subjects = [(s, baseline_frame_distances(s)) for s in shots if s.has_subject]
    better = [min(float(d.mean()) for d in per_frame.values()) for _, per_frame in subjects]
    for name in ("mean position", "frame centre"):
        values = {kind: [float(d[name].mean()) for s, d in subjects if s.kind == kind] for kind in OBJECT_KINDS}
        everything = [float(d[name].mean()) for _, d in subjects]
        firsts = [float(d[name][0]) for _, d in subjects]
        rows[f"baseline: blob parked at the {name}"] = {
            "static": float(np.mean(values["object"])) if values["object"] else float("nan"),
            "moving": float(np.mean(values["object+camera"])) if values["object+camera"] else float("nan"),
            "first": float(np.mean(firsts)) if firsts else float("nan"),
            "ratio": float(np.mean(everything) / np.mean(better)) if better else float("nan"),
        }
    return rows


def reference_row(shots: list[BlockoutShot], videos) -> dict:
    """The row of `videos` (one a shot) scored as if they were the takes; no sampling, so no seconds."""
    scores = [{**score(video, shot), "seconds": 0.0} for video, shot in zip(videos, shots, strict=True)]
    return {key: value for key, value in summarise(shots, scores).items() if key != "seconds"}


def best_variant(rows: dict[str, dict]) -> str:
    """The guided row that keeps the take's subject closest to the shot's (relative to the better
    baseline); where no shot has a subject, the one that follows the camera in the most frames."""
    guided = [name for name in ROWS if name != PLAIN and name in rows]

    def rank(name):
        ratio, camera = rows[name].get("ratio", float("nan")), rows[name].get("camera", float("nan"))
        return (np.inf if np.isnan(ratio) else ratio, -(0.0 if np.isnan(camera) else camera))

    return min(guided, key=rank)


def table(rows: dict[str, dict]) -> str:
    head = [
        "mode",
        "subject distance px, static camera",
        "subject distance px, moving camera",
        "subject distance px, first frame",
        "to better baseline",
        "frames without the prompt's colour",
        "to better baseline, frames that show it",
        "camera followed, frames",
        "camera followed in most frames, shots",
        "text adherence",
        "s / video",
    ]
    keys = ("static", "moving", "first", "ratio", "missing", "shown_ratio", "camera", "camera_most", "text", "seconds")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row in rows.items():
        cells = [
            ("-" if key not in row or np.isnan(row[key]) else f"{row[key]:.{1 if key in keys[:3] else 3}f}")
            for key in keys
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run(
    pipe,
    shots: list[BlockoutShot],
    steps: int,
    guided: int,
    max_area: int | None,
    on_mode=None,
    modes_run=ROWS,
    takes_per_shot: int = 1,
) -> dict[str, dict]:
    """The rows of the table: the baselines, the references, then the takes of each mode in
    `modes_run` (all of ROWS by default), `takes_per_shot` a shot; `on_mode(name, row)` hears of each
    mode's row as it is done."""
    rows = baseline_rows(shots)
    rows[REFERENCE] = reference_row(shots, [shot.scene for shot in shots])
    rows[ROUND_TRIP] = reference_row(shots, [flowmotion.round_trip(pipe, s.scene, max_area=max_area) for s in shots])
    configs = modes(steps, guided, 0.03)
    configs[NO_CAMERA] = configs[SUBJECT_MODES[0]].replace(camera_placement=False)
    for name in (name for name in ROWS if name in modes_run):
        masks = name in (*SUBJECT_MODES, NO_CAMERA)
        scores = evaluate(pipe, shots, configs[name], masks, max_area, takes_per_shot)
        rows[name] = summarise(shots, scores)
        if on_mode is not None:
            on_mode(name, rows[name])
    if sum(name != PLAIN and name in rows for name in ROWS) > 1:  # a best of one is no choice
        best = best_variant(rows)
        rows[BEST + best] = rows[best]
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=flowmotion.EMBEDDED_MODEL)
    parser.add_argument("--device", default="cpu", help="where the model runs: cpu (default) or cuda")
    parser.add_argument(
        "--shots-dir",
        type=Path,
        default=None,
        help="read held-out shots that flowmotion.toy.blender_world wrote here instead of "
        "rendering them (no Blender needed)",
    )
    parser.add_argument("--shots", type=int, default=24)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=192)
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--guided-steps", type=int, default=10)
    parser.add_argument(
        "--max-area",
        type=int,
        help="pixels per frame the model works at (default: the area a trained folder such as the "
        "embedded model's was trained at; no cap for other models)",
    )
    parser.add_argument(
        "--mode",
        action="append",
        choices=ROWS,
        metavar="MODE",
        help="run only this mode's takes (repeat for more; default: every mode): " + "; ".join(ROWS),
    )
    parser.add_argument(
        "--takes-per-shot",
        type=int,
        default=1,
        help="takes a shot, each from its own generator seed, their scores averaged (default 1)",
    )
    args = parser.parse_args(argv)
    if args.takes_per_shot < 1:
        parser.error(f"--takes-per-shot must be 1 or more, got {args.takes_per_shot}")
    args.max_area = max_area_for(args.model, args.max_area)
    started = time.monotonic()
    try:
        shots = (
            shots_from_folder(args.shots_dir)
            if args.shots_dir is not None
            else held_out_shots(held_out_seeds(args.shots), args.width, args.height, args.frames)
        )
    except (BlockoutError, blender_world.BlenderWorldError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    rendered = time.monotonic() - started
    print(f"  {len(shots)} shots {'read' if args.shots_dir else 'rendered'} ({rendered:.0f} s)", file=sys.stderr)
    pipe = flowmotion.load_pipeline(args.model, device=args.device)
    rows = run(
        pipe,
        shots,
        args.steps,
        args.guided_steps,
        args.max_area,
        on_mode=lambda name, row: print(
            f"  done ({time.monotonic() - started:.0f} s): {table({name: row}).splitlines()[-1]}", file=sys.stderr
        ),
        modes_run=args.mode or ROWS,
        takes_per_shot=args.takes_per_shot,
    )
    print(describe_run(args, shots, rendered) + "\n")
    print(table(rows))
    return 0


def describe_run(args, shots: list[BlockoutShot], rendered: float) -> str:
    """The run's shots, model, settings and machine, as the line above the table."""
    kinds = {kind: sum(shot.kind == kind for shot in shots) for kind in blender_world.KINDS}
    frames, height, width = shots[0].playblast.shape[:3]
    where = (
        f"read from {args.shots_dir}"
        if args.shots_dir is not None
        else f"rendering {rendered / (len(shots) * frames):.3f} s a frame (both looks and the mask)"
    )
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"{torch.get_num_threads()} threads"
    return (
        f"{len(shots)} held-out Blender shots (seeds {shots[0].seed}-{shots[-1].seed}; "
        + ", ".join(f"{count} {kind}" for kind, count in kinds.items())
        + f"), {width}x{height}, {frames} frames, {where}; model {args.model} at "
        + ("no area cap, " if args.max_area is None else f"max area {args.max_area}, ")
        + f"{args.steps} steps ({args.guided_steps} guided), "
        + (f"{args.takes_per_shot} takes a shot, " if args.takes_per_shot > 1 else "")
        + f"torch {torch.__version__} on {args.device} "
        f"({device}), {time.strftime('%Y-%m-%d', time.gmtime())}"
    )


if __name__ == "__main__":
    sys.exit(main())
