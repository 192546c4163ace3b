"""Writes examples/shot.blend: a previs blockout for the demo. A cube slides along a path, a
ball bounces across it, and the camera dollies in; 33 frames at 24 fps, 160x96 output.

    python examples/make_sample_shot.py      (needs the bpy package: pip install bpy==5.0.1)
"""

from __future__ import annotations

import math
from pathlib import Path

import bpy

FRAMES = 33


def main() -> None:
    bpy.ops.wm.read_homefile(use_empty=True)
    scene = bpy.context.scene
    scene.name = "shot010"
    scene.frame_start, scene.frame_end = 1, FRAMES
    scene.render.fps = 24
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 160, 96, 100
    scene.world = bpy.data.worlds.new("previs_grey")
    scene.world.color = (0.25, 0.25, 0.25)  # Workbench's flat grey backdrop

    bpy.ops.mesh.primitive_plane_add(size=30)
    bpy.context.object.name = "ground"
    bpy.ops.mesh.primitive_cube_add(size=1.2, location=(-3.0, 1.5, 0.6))
    cube = bpy.context.object
    cube.name = "hero_cube"
    for frame, (x, y) in ((1, (-3.0, 1.5)), (17, (0.0, 0.5)), (FRAMES, (3.0, 1.5))):
        cube.location = (x, y, 0.6)
        cube.keyframe_insert("location", frame=frame)
    bpy.ops.mesh.primitive_uv_sphere_add(radius=0.5, location=(3.0, -1.0, 0.5))
    ball = bpy.context.object
    ball.name = "ball"
    for frame in range(1, FRAMES + 1, 4):
        t = (frame - 1) / (FRAMES - 1)
        ball.location = (3.0 - 6.0 * t, -1.0, 0.5 + 2.0 * abs(math.sin(math.pi * 2 * t)))
        ball.keyframe_insert("location", frame=frame)

    bpy.ops.object.camera_add(location=(0.0, -11.0, 3.0), rotation=(math.radians(78), 0.0, 0.0))
    camera = bpy.context.object
    scene.camera = camera
    camera.keyframe_insert("location", frame=1)
    camera.location = (0.0, -8.0, 2.6)
    camera.keyframe_insert("location", frame=FRAMES)
    bpy.ops.object.light_add(type="SUN", location=(0, 0, 10))

    out = Path(__file__).with_name("shot.blend")
    bpy.ops.wm.save_as_mainfile(filepath=str(out), compress=True)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
