"""Writes examples/shot.blend: the demo's previs blockout, a shot of the embedded model's Blender
world (`flowmotion.toy.blender_world`) that no training set holds.

    python examples/make_sample_shot.py      (needs the bpy package: pip install bpy==5.0.1)

The shot is seed 1000911: a grey ball hopping from right to left across a static set of
primitives on a ground plane, under a static camera; 17 frames at 12 fps, 320x192 (an artist's
wide frame, not the model's working size), in the playblast look (Blender's factory Workbench
settings, as the add-on renders them).
Why this seed: it is held out (at or above `BENCHMARK_SEED_START`, which no training set reaches)
and above the benchmark's own 24 seeds, so the demo is not one of the benchmark's shots. Of the
static-camera shots of a hopping ball among the held-out seeds 1000024 to 1002999 whose ball
travels more than half the frame's width, it has the largest ball (4.6 % of the frame; its centre
goes from x 239 to x 54 px, and up to y 31 px at the top of the hop), so whether the take follows
is plain to see; a hop moves it both ways, where a slide moves it along one line. With the
camera static, the set holds still and the only thing the take has to move is the subject.
The ball is the only object that moves (the camera holds its place), so the add-on's default
Subjects setting (Moving Objects) finds it and sends its silhouette as the subject mask; it is
named "ball", so the add-on's report names it the way an artist would.
"""

from __future__ import annotations

import sys
from pathlib import Path

import bpy

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flowmotion.toy import blender_world  # noqa: E402

SEED = 1_000_911
WIDTH, HEIGHT, FRAMES, FPS = 320, 192, 17, 12


def main() -> None:
    if SEED < blender_world.BENCHMARK_SEED_START:
        raise SystemExit(f"seed {SEED} is a training seed; the demo's shot must be held out")
    spec = blender_world.shot_spec(SEED, FRAMES)
    scene, subject, pieces, ground = blender_world.build_scene(spec, WIDTH, HEIGHT)
    blender_world.set_look(scene, "playblast", spec, subject, pieces, ground)
    scene.name = "shot010"
    scene.render.fps = FPS
    subject.name = spec.shape  # "ball"
    out = Path(__file__).with_name("shot.blend")
    bpy.ops.wm.save_as_mainfile(filepath=str(out), compress=True)
    print(f"wrote {out}: seed {SEED}, {spec.kind} shot, a {spec.path} of a {spec.shape} under a static camera")


if __name__ == "__main__":
    main()
