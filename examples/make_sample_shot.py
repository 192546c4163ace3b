"""Writes examples/shot.blend: a previs blockout for the demo. A ball hops across a stage past a
box while the camera dollies in; 17 frames at 12 fps, 96x96 output (the embedded model's world
is square and short).

    python examples/make_sample_shot.py      (needs the bpy package: pip install bpy==5.0.1)
"""

from __future__ import annotations

import math
from pathlib import Path

import bpy

FRAMES = 17


def main() -> None:
    bpy.ops.wm.read_homefile(use_empty=True)
    scene = bpy.context.scene
    scene.name = "shot010"
    scene.frame_start, scene.frame_end = 1, FRAMES
    scene.render.fps = 12
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 96, 96, 100
    scene.world = bpy.data.worlds.new("previs_grey")
    scene.world.color = (0.25, 0.25, 0.25)  # Workbench's flat grey backdrop

    bpy.ops.mesh.primitive_plane_add(size=30)
    bpy.context.object.name = "ground"
    bpy.ops.mesh.primitive_cube_add(size=1.0, location=(2.5, 3.0, 0.5))
    bpy.context.object.name = "box"
    bpy.ops.mesh.primitive_uv_sphere_add(radius=1.0, location=(-2.5, -1.0, 1.0))
    ball = bpy.context.object
    ball.name = "ball"
    for frame in range(1, FRAMES + 1, 2):
        t = (frame - 1) / (FRAMES - 1)
        ball.location = (-2.5 + 5.0 * t, -1.0, 1.0 + 1.8 * abs(math.sin(math.pi * t)))
        ball.keyframe_insert("location", frame=frame)

    bpy.ops.object.camera_add(location=(0.0, -11.0, 2.2), rotation=(math.radians(85), 0.0, 0.0))
    camera = bpy.context.object
    scene.camera = camera
    camera.keyframe_insert("location", frame=1)
    camera.location = (0.0, -9.5, 2.0)
    camera.keyframe_insert("location", frame=FRAMES)
    bpy.ops.object.light_add(type="SUN", location=(0, 0, 10))

    out = Path(__file__).with_name("shot.blend")
    bpy.ops.wm.save_as_mainfile(filepath=str(out), compress=True)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
