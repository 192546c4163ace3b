"""Runs one scenario inside real Blender (the bpy module) in its own process, with its own user
folder, and prints a JSON report as its last line. The tests start it; it is not a test itself.

    python blender_driver.py SCENARIO '{"zip": ..., "address": ..., ...}'
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

EXTENSION = "bl_ext.user_default.flowmotion_previs"
FAST = {"num_inference_steps": 4, "guided_steps": 2, "optimization_steps": 1}


def wheel_site_packages() -> Path:
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    return Path(os.environ["BLENDER_USER_RESOURCES"]) / "extensions" / ".local" / "lib" / version / "site-packages"


import bpy  # noqa: E402


def import_from_wheels() -> dict:
    """Import pyzmq and msgpack from the folder Blender unpacked the bundled wheels into, in a Python
    without site-packages: the test environment's own copies cannot stand in for them."""
    import subprocess

    code = ("import sys; sys.path.insert(0, sys.argv[1]); import zmq, msgpack; "
            "print(zmq.__file__); print(msgpack.__file__); print(zmq.zmq_version())")
    result = subprocess.run([sys.executable, "-S", "-c", code, str(wheel_site_packages())], capture_output=True,
                            text=True)
    lines = result.stdout.split()
    return {"returncode": result.returncode, "stderr": result.stderr[-500:], "zmq": lines[0] if lines else "",
            "msgpack": lines[1] if len(lines) > 1 else "", "libzmq": lines[2] if len(lines) > 2 else ""}


def install(zip_path: str) -> dict:
    result = bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default", enable_on_install=True)
    return {"install": sorted(result), "enabled": EXTENSION in bpy.context.preferences.addons,
            "bundled": import_from_wheels(), "wheels_dir": str(wheel_site_packages()),
            "has_scene_property": hasattr(bpy.types.Scene, "flowmotion"),
            "panels": sorted(name for name in dir(bpy.types) if name.startswith("FLOWMOTION_PT_"))}


def addon():
    return sys.modules[EXTENSION]


def build_shot(scene, frames: int = 9) -> None:
    """A cube moving along a path and a camera dolly, in a small, fast frame."""
    scene.frame_start, scene.frame_end = 1, frames
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 72, 40, 100
    cube = scene.objects["Cube"]
    for frame, x in ((1, -3.0), (frames // 2 + 1, 0.0), (frames, 3.0)):
        cube.location = (x, 0.0, abs(x) * 0.3)
        cube.keyframe_insert("location", frame=frame)
    camera = scene.camera
    camera.location = (0.0, -10.0, 2.0)
    camera.rotation_euler = (1.45, 0.0, 0.0)
    camera.keyframe_insert("location", frame=1)
    camera.location = (0.0, -7.0, 2.0)
    camera.keyframe_insert("location", frame=frames)


def render_settings(scene) -> dict:
    r = scene.render
    return {"engine": r.engine, "x": r.resolution_x, "y": r.resolution_y, "percentage": r.resolution_percentage,
            "filepath": r.filepath, "format": r.image_settings.file_format, "frame": scene.frame_current}


def configure(options: dict) -> None:
    prefs = bpy.context.preferences.addons[EXTENSION].preferences
    prefs.address = options["address"]
    prefs.connect_timeout = options.get("timeout", 10.0)
    shot = bpy.context.scene.flowmotion
    shot.prompt, shot.seed = options.get("prompt", "a red ball on grass"), options.get("seed", 7)
    for name, value in {**FAST, **options.get("settings", {})}.items():
        setattr(shot.settings, name, value)


def drive(until, seconds: float) -> float:
    """Timers do not fire in background mode: call the add-on's timer callback ourselves."""
    started = time.monotonic()
    session = addon().session
    while time.monotonic() - started < seconds:
        session.tick()
        if until():
            break
        time.sleep(0.05)
    return time.monotonic() - started


def take_report(scene) -> dict:
    shot = scene.flowmotion
    takes = [{"name": t.name, "state": t.state, "message": t.message, "job_id": t.job_id, "folder": t.folder,
              "frame_count": t.frame_count, "strip": t.strip_name} for t in shot.takes]
    strips = []
    if scene.sequence_editor is not None:
        for strip in scene.sequence_editor.strips_all:
            element = strip.elements[0]
            strips.append({"name": strip.name, "channel": strip.channel, "start": strip.frame_final_start,
                           "duration": strip.frame_final_duration, "elements": len(strip.elements),
                           "size": [element.orig_width, element.orig_height], "directory": strip.directory,
                           "props": {k: strip[k] for k in strip.keys() if k.startswith("flowmotion_")}})
    return {"takes": takes, "strips": strips, "status": shot.status, "error": addon().session.last_error()}


def generate(options: dict) -> dict:
    report = install(options["zip"])
    scene = bpy.context.scene
    build_shot(scene)
    if options.get("blend"):
        bpy.ops.wm.save_as_mainfile(filepath=options["blend"])
    configure(options)
    before = render_settings(scene)
    plan = addon().playblast.plan(scene, scene.flowmotion.max_side)
    report["plan"] = {"frames": plan.frames, "width": plan.width, "height": plan.height}
    report["generate"] = sorted(bpy.ops.flowmotion.generate())
    report["render_settings_kept"] = render_settings(scene) == before
    take = scene.flowmotion.takes[-1] if len(scene.flowmotion.takes) else None
    mode = options.get("mode", "finish")
    if take is None:
        pass
    elif mode == "finish":
        report["seconds"] = drive(lambda: take.state in ("imported", "failed", "cancelled"), 60)
    elif mode == "cancel":
        drive(lambda: take.state == "running", 60)
        bpy.ops.flowmotion.cancel()
        report["seconds"] = drive(lambda: take.state in ("cancelled", "failed", "imported"), 30)
    elif mode == "save_and_quit":
        drive(lambda: take.state in ("queued", "running"), 30)
        bpy.ops.wm.save_mainfile()
    elif mode == "unreachable":
        report["seconds"] = drive(lambda: bool(take.message), options.get("timeout", 1.0) + 10)
    report.update(take_report(scene))
    return report


def reattach(options: dict) -> dict:
    report = install(options["zip"])
    # The artist's preferences live in their user folder, not in the .blend.
    bpy.context.preferences.addons[EXTENSION].preferences.address = options["address"]
    bpy.ops.wm.open_mainfile(filepath=options["blend"])  # load_post reattaches
    scene = bpy.context.scene
    take = scene.flowmotion.takes[-1]
    report["state_on_open"] = take.state
    report["seconds"] = drive(lambda: take.state in ("imported", "failed", "cancelled"), 60)
    report.update(take_report(scene))
    return report


def problems(options: dict) -> dict:
    """What Generate says when the shot cannot be sent, and that nothing is sent."""
    install(options["zip"])
    scene = bpy.context.scene
    build_shot(scene)
    scene.flowmotion.prompt = "a red ball"
    report = {"ready": bpy.ops.flowmotion.generate.poll()}
    scene.frame_end = scene.frame_start - 1  # Blender keeps the range at one frame or more
    report["shortest_plan"] = addon().playblast.plan(scene, scene.flowmotion.max_side).frames
    scene.frame_end = scene.frame_start + 8
    bpy.data.objects.remove(scene.camera)
    report["no_camera"] = addon().operators.shot_problem(bpy.context)
    report["no_camera_poll"] = bpy.ops.flowmotion.generate.poll()
    report["takes"] = len(scene.flowmotion.takes)
    return report


SCENARIOS = {"install": lambda options: install(options["zip"]), "generate": generate, "reattach": reattach,
             "problems": problems}

if __name__ == "__main__":
    scenario, options = sys.argv[1], json.loads(sys.argv[2])
    result = SCENARIOS[scenario](options)
    print("\nREPORT " + json.dumps(result, default=str), flush=True)
