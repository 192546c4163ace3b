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

    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import zmq, msgpack; "
        "print(zmq.__file__); print(msgpack.__file__); print(zmq.zmq_version())"
    )
    result = subprocess.run(
        [sys.executable, "-S", "-c", code, str(wheel_site_packages())], capture_output=True, text=True
    )
    lines = result.stdout.split()
    return {
        "returncode": result.returncode,
        "stderr": result.stderr[-500:],
        "zmq": lines[0] if lines else "",
        "msgpack": lines[1] if len(lines) > 1 else "",
        "libzmq": lines[2] if len(lines) > 2 else "",
    }


def install(zip_path: str) -> dict:
    result = bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default", enable_on_install=True)
    return {
        "install": sorted(result),
        "enabled": EXTENSION in bpy.context.preferences.addons,
        "bundled": import_from_wheels(),
        "wheels_dir": str(wheel_site_packages()),
        "has_scene_property": hasattr(bpy.types.Scene, "flowmotion"),
        "panels": sorted(name for name in dir(bpy.types) if name.startswith("FLOWMOTION_PT_")),
    }


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
    return {
        "engine": r.engine,
        "x": r.resolution_x,
        "y": r.resolution_y,
        "percentage": r.resolution_percentage,
        "filepath": r.filepath,
        "format": r.image_settings.file_format,
        "frame": scene.frame_current,
    }


def save(options: dict) -> None:
    """Takes go next to a saved .blend: save to the given path, or to shot.blend in the test's folder."""
    bpy.ops.wm.save_as_mainfile(filepath=str(options.get("blend") or Path.cwd() / "shot.blend"))


def configure(options: dict) -> None:
    prefs = bpy.context.preferences.addons[EXTENSION].preferences
    prefs.address = options["address"]
    prefs.connect_timeout = options.get("timeout", 10.0)
    shot = bpy.context.scene.flowmotion
    shot.prompt, shot.seed = options.get("prompt", "a red ball on grass"), options.get("seed", 7)
    for name, value in {**FAST, **options.get("settings", {})}.items():
        setattr(shot.settings, name, value)


def shot_ready(options: dict) -> tuple[dict, object]:
    """The start of most scenarios: the extension installed, the test shot built and saved, the
    backend's address set. The install's report and the scene."""
    report = install(options["zip"])
    scene = bpy.context.scene
    build_shot(scene)
    save(options)
    configure(options)
    return report, scene


SETTINGS_CHANGED = []


def drive(until, seconds: float, watch=None) -> float:
    """Timers do not fire in background mode: call the add-on's timer callback ourselves. With
    `watch` (a scene), every tick checks that the artist's render settings are as they were."""
    started = time.monotonic()
    session = addon().session
    kept = full_render_settings(watch) if watch is not None else None
    while time.monotonic() - started < seconds:
        session.tick()
        if watch is not None and full_render_settings(watch) != kept:
            SETTINGS_CHANGED.append(full_render_settings(watch))
        if until():
            break
        time.sleep(0.01)
    return time.monotonic() - started


def ended(*takes) -> bool:
    return all(take.state in ("imported", "failed", "cancelled") for take in takes)


def land(scene, seconds: float = 90) -> float:
    """Drive until every take of the scene has ended."""
    return drive(lambda: ended(*scene.flowmotion.takes), seconds, watch=scene)


def take_report(scene) -> dict:
    shot = scene.flowmotion
    takes = [
        {
            "name": t.name,
            "state": t.state,
            "message": t.message,
            "job_id": t.job_id,
            "folder": t.folder,
            "frame_count": t.frame_count,
            "strip": t.strip_name,
            "seed": t.seed,
            "words": t.describe(),
            "frame_start": t.frame_start,
        }
        for t in shot.takes
    ]
    strips = []
    if scene.sequence_editor is not None:
        for strip in scene.sequence_editor.strips_all:
            element = strip.elements[0]
            strips.append(
                {
                    "name": strip.name,
                    "channel": strip.channel,
                    "start": strip.frame_final_start,
                    "duration": strip.frame_final_duration,
                    "elements": len(strip.elements),
                    "mute": strip.mute,
                    "size": [element.orig_width, element.orig_height],
                    "directory": strip.directory,
                    "props": {k: strip[k] for k in strip.keys() if k.startswith("flowmotion_")},
                }
            )
    return {
        "takes": takes,
        "strips": strips,
        "status": shot.status,
        "error": addon().session.last_error(),
        "settings_changed_mid_way": len(SETTINGS_CHANGED),
    }


def generate(options: dict) -> dict:
    report, scene = shot_ready(options)
    before = render_settings(scene)
    plan = addon().playblast.plan(scene, scene.flowmotion.max_side)
    report["plan"] = {"frames": plan.frames, "width": plan.width, "height": plan.height}
    report["generate"] = sorted(bpy.ops.flowmotion.generate())
    take = scene.flowmotion.takes[-1] if len(scene.flowmotion.takes) else None
    mode = options.get("mode", "finish")
    if take is None:
        pass
    elif mode == "finish":
        report["seconds"] = land(scene)
    elif mode == "cancel":
        drive(lambda: take.state == "running", 60)
        bpy.ops.flowmotion.cancel()
        report["seconds"] = drive(lambda: ended(take), 30)
    elif mode == "save_and_quit":
        drive(lambda: take.state in ("queued", "running"), 30)
        bpy.ops.wm.save_mainfile()
    elif mode == "blocked_folder":
        blocker = Path(bpy.path.abspath("//flowmotion"))
        blocker.write_text("not a folder")  # the take's frames cannot be written under it
        drive(lambda: take.state == "done" and bool(take.message), 60)
        report["blocked"] = {
            "state": take.state,
            "words": take.describe(),
            "reimport_poll": bpy.ops.flowmotion.import_take.poll(),
        }
        blocker.unlink()
        report["reimport"] = sorted(bpy.ops.flowmotion.import_take())
        report["seconds"] = land(scene)
    elif mode == "save_mid_playblast":
        drive(lambda: take.state == "rendering" and take.step >= 2, 30)
        bpy.ops.wm.save_mainfile()
    elif mode == "unreachable":
        report["seconds"] = drive(lambda: ended(take), options.get("timeout", 1.0) + 10)
    report["render_settings_kept"] = render_settings(scene) == before
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
    report = {
        "unsaved_ready": bpy.ops.flowmotion.generate.poll(),
        "unsaved_problem": addon().operators.shot_problem(bpy.context),
    }
    save(options)
    report["ready"] = bpy.ops.flowmotion.generate.poll()
    scene.frame_end = scene.frame_start - 1  # Blender keeps the range at one frame or more
    report["shortest_plan"] = addon().playblast.plan(scene, scene.flowmotion.max_side).frames
    scene.frame_end = scene.frame_start + 8
    bpy.data.objects.remove(scene.camera)
    report["no_camera"] = addon().operators.shot_problem(bpy.context)
    report["no_camera_poll"] = bpy.ops.flowmotion.generate.poll()
    report["takes"] = len(scene.flowmotion.takes)
    return report


def full_render_settings(scene) -> dict:
    """Every setting the playblast touches, and a few it must leave alone."""
    r, image = scene.render, scene.render.image_settings
    return {
        "engine": r.engine,
        "x": r.resolution_x,
        "y": r.resolution_y,
        "percentage": r.resolution_percentage,
        "filepath": r.filepath,
        "extension": r.use_file_extension,
        "transparent": r.film_transparent,
        "media": image.media_type,
        "format": image.file_format,
        "color": image.color_mode,
        "depth": image.color_depth,
        "codec": r.ffmpeg.codec,
        "frame": scene.frame_current,
    }


def png_size(path: Path) -> list[int]:
    header = path.read_bytes()[:24]
    return [int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")]


def playblast(options: dict) -> dict:
    """A playblast of a shot whose output is a video, and one that fails halfway: the artist's
    render settings come back both times, and a failed playblast leaves no folder behind."""
    install(options["zip"])
    scene = bpy.context.scene
    build_shot(scene)
    scene.frame_end = 12  # not of the form 4k + 1: the model gets 13 frames spread over 12
    r = scene.render
    r.resolution_percentage, r.filepath, r.film_transparent = 50, "//renders/final_", True
    r.image_settings.media_type = "VIDEO"
    r.image_settings.file_format = "FFMPEG"
    r.ffmpeg.codec = "H264"
    scene.frame_set(5)
    before = full_render_settings(scene)
    module = addon().playblast
    paths = module.render(scene, 832).frames
    report = {
        "before": before,
        "after_success": full_render_settings(scene),
        "frames": [p.name for p in paths],
        "sizes": sorted({tuple(png_size(p)) for p in paths}),
        "folder_parent": str(paths[0].parent.parent),
    }

    def lose_camera(scene, *_args):
        if scene.frame_current == 7:
            scene.camera = None

    bpy.app.handlers.frame_change_post.append(lose_camera)
    try:
        module.render(scene, 832)
        report["error"] = None
    except module.PlayblastError as error:
        report["error"] = str(error)
    bpy.app.handlers.frame_change_post.remove(lose_camera)
    after = full_render_settings(scene)
    report["after_failure"] = after
    report["left_behind"] = sorted(
        p.name for p in Path(report["folder_parent"]).glob("flowmotion-playblast-*") if p != paths[0].parent
    )
    return report


def takes(options: dict) -> dict:
    """Two Generates in a row on an unsaved file: the second is queued, both land on free channels;
    then one take is removed and the other re-imported, from disk and from the backend."""
    report, scene = shot_ready(options)
    shot = scene.flowmotion
    shot.settings.num_inference_steps = 40  # long enough that the second take is seen waiting behind it
    report["generate"] = [sorted(bpy.ops.flowmotion.generate())]
    shot.settings.num_inference_steps = FAST["num_inference_steps"]
    report["generate"].append(sorted(bpy.ops.flowmotion.generate()))
    seen = {}

    def both_landed():
        for take in shot.takes:
            seen.setdefault(take.name, set()).add(take.state)
            seen.setdefault(take.name + " words", set()).add(take.describe())
        return all(take.state == "imported" for take in shot.takes)

    report["seconds"] = drive(both_landed, 90)
    report["states_seen"] = {name: sorted(states) for name, states in seen.items()}
    report["landed"] = take_report(scene)
    first, second = shot.takes[0], shot.takes[1]
    first_folder, second_folder = first.folder, second.folder
    shot.active_take = 0
    report["remove"] = sorted(bpy.ops.flowmotion.remove_take())
    report["after_remove"] = take_report(scene)
    report["first_folder_exists"] = Path(first_folder).exists()
    shot.active_take = 0
    report["reimport_from_disk"] = sorted(bpy.ops.flowmotion.import_take())
    report["after_reimport"] = take_report(scene)
    for frame in Path(second_folder).glob("frame_*.png"):
        frame.unlink()
    report["reimport_from_backend"] = sorted(bpy.ops.flowmotion.import_take())
    report["refetch_seconds"] = drive(lambda: shot.takes[0].state == "imported", 30)
    report["after_refetch"] = take_report(scene)
    report["second_folder_frames"] = len(list(Path(second_folder).glob("frame_*.png")))
    return report


def secured(options: dict) -> dict:
    """A secured backend: a key pair made in one click is refused until the backend's operator
    allows it, then works."""
    report, scene = shot_ready(options)
    prefs = bpy.context.preferences.addons[EXTENSION].preferences
    prefs.server_public_key = options["server_key"]
    report["keys"] = sorted(bpy.ops.flowmotion.generate_keys())
    secret = Path(prefs.client_secret_file)
    report["key_folder"] = str(secret.parent)
    report["secret_mode"] = secret.stat().st_mode & 0o777
    report["public_key"] = prefs.client_public_key
    session = addon().session
    report["connect"] = sorted(bpy.ops.flowmotion.connect())
    report["refused_seconds"] = drive(lambda: bool(session.last_error()), options["timeout"] + 10)
    report["refused_error"] = session.last_error()
    public = secret.with_name(secret.name.replace(".key_secret", ".key"))
    (Path(options["allowed"]) / "blender-artist.key").write_bytes(public.read_bytes())
    # The backend re-reads its allow list every few seconds: go on once it lets the key in.
    report["admitted"] = admitted(options["address"], options["server_key"], secret, 30)
    # No Connect pressed: Generate itself tries again on the connection that was refused.
    report["generate"] = sorted(bpy.ops.flowmotion.generate())
    take = scene.flowmotion.takes[-1]
    report["allowed_seconds"] = drive(lambda: session.current().alive, 10)
    report["secure"] = bool(session.current().welcome and session.current().welcome.secure)
    drive(lambda: take.state in ("imported", "failed", "cancelled"), 60)
    report.update(take_report(scene))
    return report


def admitted(address: str, server_key: str, secret_file: Path, timeout: float) -> bool:
    """Whether the backend lets this key pair in within `timeout` seconds, asked by a probe
    connection of its own: a fresh one each try, since ZeroMQ does not try a refused one again."""
    import zmq
    import zmq.auth
    from zmq.utils.monitor import recv_monitor_message

    public, secret = zmq.auth.load_certificate(secret_file)
    ended = (
        zmq.EVENT_HANDSHAKE_SUCCEEDED
        | zmq.EVENT_HANDSHAKE_FAILED_AUTH
        | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
        | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        probe = zmq.Context.instance().socket(zmq.DEALER)
        probe.setsockopt(zmq.LINGER, 0)
        probe.curve_serverkey, probe.curve_publickey, probe.curve_secretkey = server_key.encode(), public, secret
        monitor = probe.get_monitor_socket(ended)  # watched from before it connects
        probe.connect(address)
        try:
            if monitor.poll(int(max(0.0, deadline - time.monotonic()) * 1000) + 1):
                if recv_monitor_message(monitor)["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                    return True
        finally:
            probe.disable_monitor()
            monitor.close(0)
            probe.close(0)
        time.sleep(0.05)  # the poll interval between two tries, not a wait for anything
    return False


def version_mismatch(options: dict) -> dict:
    """An add-on that speaks another protocol version is told so, and says so in the panel."""
    report, scene = shot_ready(options)
    speaking = sys.modules[EXTENSION + ".protocol.client"]  # an add-on that speaks only a version to come
    speaking.PROTOCOL_VERSION, speaking.SUPPORTED_VERSIONS = 999, (999,)
    report["generate"] = sorted(bpy.ops.flowmotion.generate())
    take = scene.flowmotion.takes[-1]
    report["seconds"] = drive(lambda: bool(take.message), options["timeout"] + 10)
    client = addon().session.current()
    if client is not None:  # past the connect timeout by the client's own clock, the reason must stay
        drive(lambda: time.monotonic() - client.connected_at > client.connect_timeout, options["timeout"] + 10)
        drive(lambda: True, 1.0)  # one more tick, the first past the timeout
    report.update(take_report(scene))
    return report


class Layout:
    """Stands in for a panel's layout: records what is drawn, and checks that every property and
    operator drawn exists, as Blender would when it draws."""

    def __init__(self, log: list):
        self.log = log

    def __getattr__(self, name):
        if name in ("row", "column", "box", "split"):
            return lambda *args, **kwargs: Layout(self.log)
        if name in ("separator", "menu"):
            return lambda *args, **kwargs: self.log.append((name, *args))
        raise AttributeError(name)

    def __setattr__(self, name, value):
        object.__setattr__(self, name, value)

    def prop(self, data, name, **kwargs):
        assert hasattr(data, name), f"no property {name!r} on {data!r}"
        self.log.append(("prop", name))

    def label(self, text="", **kwargs):
        self.log.append(("label", text))

    def operator(self, idname, **kwargs):
        group, name = idname.split(".")
        assert hasattr(getattr(bpy.ops, group), name), f"no operator {idname}"
        self.log.append(("operator", idname))

    def progress(self, factor=0.0, type="BAR", text=""):
        self.log.append(("progress", round(factor, 3), text))

    def template_list(self, list_type, list_id, data, name, active_data, active_name, **kwargs):
        assert hasattr(data, name) and hasattr(active_data, active_name)
        self.log.append(("list", list_type))

    def template_icon(self, icon_value=0, scale=1.0):
        # Background Blender gives no icon ids (0): the icon's pixels are checked instead.
        self.log.append(("icon", scale))


def draw(panel_name: str) -> list:
    log = []
    panel = getattr(bpy.types, panel_name)
    panel.draw(type("Drawn", (), {"layout": Layout(log)})(), bpy.context)
    return log


def panels(options: dict) -> dict:
    """Both sidebars draw, idle and with a take running, and the Advanced panel offers every setting."""
    report = install(options["zip"])
    scene = bpy.context.scene
    build_shot(scene)
    save(options)
    shot = scene.flowmotion
    report["idle"] = draw("FLOWMOTION_PT_main_view3d")
    take = shot.takes.add()
    take.name, take.state, take.phase, take.step, take.total, take.eta = "take_001", "running", "guided_step", 3, 12, 40
    shot.active_take, shot.status = 0, "the backend at tcp://127.0.0.1:1 did not answer"
    report["running"] = draw("FLOWMOTION_PT_main_sequencer")
    report["advanced"] = draw("FLOWMOTION_PT_advanced_sequencer")
    report["menu"] = draw("FLOWMOTION_MT_main")
    report["in_render_menu"] = any(
        getattr(f, "__module__", "").startswith(EXTENSION) for f in bpy.types.TOPBAR_MT_render._dyn_ui_initialize()
    )
    report["operator_labels"] = {
        name: getattr(bpy.types, name).bl_label for name in dir(bpy.types) if name.startswith("FLOWMOTION_OT_")
    }
    report["setting_names"] = list(addon().properties.SETTING_NAMES)
    report["parents"] = {
        name: getattr(bpy.types, name).bl_parent_id
        for name in ("FLOWMOTION_PT_advanced_view3d", "FLOWMOTION_PT_advanced_sequencer")
    }
    report["spaces"] = sorted(
        {(getattr(bpy.types, name).bl_space_type, getattr(bpy.types, name).bl_category) for name in report["panels"]}
    )
    return report


def install_both(options: dict) -> dict:
    """The zip for a later Blender's Python is refused by this one; the zip for this one installs."""
    try:
        refused = sorted(
            bpy.ops.extensions.package_install_files(
                filepath=options["later_zip"], repo="user_default", enable_on_install=True
            )
        )
    except RuntimeError as error:
        refused = str(error)
    folder = Path(os.environ["BLENDER_USER_RESOURCES"]) / "extensions" / "user_default" / "flowmotion_previs"
    report = {
        "later": refused,
        "later_enabled": EXTENSION in bpy.context.preferences.addons,
        "later_installed": folder.exists(),
    }
    report.update(install(options["zip"]))
    return report


def alpha_centres(paths: list[Path]) -> list:
    """Per mask PNG: its mode, and the x centre of its opaque pixels (None when there are none)."""
    import imageio.v3 as iio
    import numpy as np

    centres = []
    for path in paths:
        image = iio.imread(path)
        if image.ndim != 3 or image.shape[-1] != 4:
            centres.append(["not RGBA", None])
            continue
        columns = np.nonzero(image[..., 3] > 127)[1]
        centres.append(["RGBA", float(columns.mean()) if len(columns) else None])
    return centres


def subjects(options: dict) -> dict:
    """Subject masks: the moving cube is found and rendered alone, a static ground is not; a chosen
    collection, none, a missing collection; and a failure in the mask pass puts everything back."""
    install(options["zip"])
    scene = bpy.context.scene
    build_shot(scene)
    bpy.ops.mesh.primitive_plane_add(size=20, location=(0.0, 0.0, -0.5))
    ground = bpy.context.object
    ground.name = "ground"
    bpy.ops.mesh.primitive_uv_sphere_add(radius=0.5, location=(-2.0, -20.0, 2.0))  # behind the camera
    unseen = bpy.context.object
    unseen.name = "unseen"
    unseen.keyframe_insert("location", frame=1)
    unseen.location.x = 2.0
    unseen.keyframe_insert("location", frame=9)
    scene.render.film_transparent = False
    module = addon().playblast
    before = full_render_settings(scene)
    report = {}
    ticks = []
    moving = module.render(scene, 832, subjects="MOVING", on_frame=lambda done, total: ticks.append([done, total]))
    report["ticks"] = ticks
    report["moving"] = {
        "subjects": moving.subjects,
        "frames": len(moving.frames),
        "masks": [p.name for p in moving.masks],
        "centres": alpha_centres(moving.masks),
        "ground_hidden": ground.hide_render,
        "settings_kept": full_render_settings(scene) == before,
    }
    scene.frame_set(4)
    ground.select_set(True)
    report["select"] = {
        "result": sorted(bpy.ops.flowmotion.select_subjects()),
        "frame": scene.frame_current,
        "selected": sorted(obj.name for obj in bpy.context.selected_objects),
    }
    scene.frame_set(before["frame"])
    report["none"] = module.render(scene, 832, subjects="NONE").masks
    try:
        module.render(scene, 832, subjects="COLLECTION")
        report["no_collection"] = None
    except module.PlayblastError as error:
        report["no_collection"] = str(error)
    scene.flowmotion.prompt, scene.flowmotion.subjects = "a red ball", "COLLECTION"
    save(options)
    report["no_collection_problem"] = addon().operators.shot_problem(bpy.context)
    set_pieces = bpy.data.collections.new("set")
    scene.collection.children.link(set_pieces)
    set_pieces.objects.link(ground)
    report["collection"] = module.render(scene, 832, subjects="COLLECTION", collection=set_pieces).subjects

    def lose_camera_in_mask_pass(scene, *_args):
        if scene.render.film_transparent and scene.frame_current == 5:
            scene.camera = None

    camera = scene.camera
    bpy.app.handlers.frame_change_post.append(lose_camera_in_mask_pass)
    try:
        module.render(scene, 832, subjects="MOVING")
        report["mask_error"] = None
    except module.PlayblastError as error:
        report["mask_error"] = str(error)
    bpy.app.handlers.frame_change_post.remove(lose_camera_in_mask_pass)
    scene.camera = camera
    report["after_failure"] = {
        "settings_kept": full_render_settings(scene) == before,
        "ground_hidden": ground.hide_render,
    }
    return report


def frame_hashes(folder: str) -> dict:
    import hashlib

    return {p.name: hashlib.sha1(p.read_bytes()).hexdigest() for p in sorted(Path(folder).glob("frame_*.png"))}


def press(times: int = 1) -> list:
    return [sorted(bpy.ops.flowmotion.generate()) for _ in range(times)]


def regenerate(options: dict) -> dict:
    """Generate, let the take land, Generate again with a render region, the compositor and the
    edit switched on: the second playblast is the 3D scene again. Then one with the seed locked."""
    report, scene = shot_ready(options)
    report["generate"] = press()
    land(scene)
    r = scene.render
    r.use_sequencer, r.use_compositing, r.use_border = True, True, True
    r.border_min_x, r.border_max_x, r.border_min_y, r.border_max_y = 0.0, 0.3, 0.0, 0.3
    report["generate"] += press()
    land(scene)
    scene.flowmotion.lock_seed = True
    report["locked_seed"] = scene.flowmotion.seed
    report["generate"] += press()
    land(scene)
    report["after"] = {"sequencer": r.use_sequencer, "compositing": r.use_compositing, "border": r.use_border}
    report.update(take_report(scene))
    report["hashes"] = [frame_hashes(take.folder) for take in scene.flowmotion.takes]
    return report


def two_files(options: dict) -> dict:
    """Two .blend files in one folder, each with a scene named Scene and a take_001; then the first
    file's take is removed."""
    report = install(options["zip"])
    runs = []
    for name in ("a", "b"):
        if name == "b":
            bpy.ops.wm.read_homefile(use_empty=False)
        scene = bpy.context.scene
        build_shot(scene)
        save({"blend": str(Path.cwd() / f"{name}.blend")})
        configure(options)
        press()
        land(scene)
        take = scene.flowmotion.takes[0]
        runs.append(
            {"name": take.name, "folder": take.folder, "state": take.state, "hashes": frame_hashes(take.folder)}
        )
        bpy.ops.wm.save_mainfile()
    report["runs"] = runs
    report["a_after_b"] = frame_hashes(runs[0]["folder"])
    bpy.ops.wm.open_mainfile(filepath=str(Path.cwd() / "a.blend"))
    bpy.context.scene.flowmotion.active_take = 0
    report["remove"] = sorted(bpy.ops.flowmotion.remove_take())
    report["a_exists"] = Path(runs[0]["folder"]).exists()
    report["b_after_remove"] = frame_hashes(runs[1]["folder"])
    return report


def frame_ranges(options: dict) -> dict:
    """Takes of shots whose length is not 4k + 1, one of them starting at frame 101."""
    report, scene = shot_ready(options)
    for first, last in options["ranges"]:
        scene.frame_start, scene.frame_end = first, last
        press()
        land(scene)
    report.update(take_report(scene))
    return report


def preflight(options: dict) -> dict:
    """A shot longer and larger than a small backend takes: nothing is rendered before the limits
    are known, the shot is refused with the reason, then sent cut to the first frames."""
    report = install(options["zip"])
    renders = []
    bpy.app.handlers.render_post.append(lambda *_args: renders.append(1))
    scene = bpy.context.scene
    build_shot(scene, frames=30)
    save(options)
    configure(options)
    module = addon().playblast
    r = scene.render
    r.resolution_x, r.resolution_y = 1920, 1080
    scene.flowmotion.max_side = 4096
    full_hd = module.plan(scene, scene.flowmotion.max_side)
    report["full_hd"] = [full_hd.width, full_hd.height]
    r.resolution_x, r.resolution_y = 72, 40
    report["generate"] = press()  # not connected yet: the backend's limits are not known
    land(scene)
    report["refused"] = take_report(scene)["takes"][-1]
    report["renders_when_refused"] = len(renders)
    report["poll_once_known"] = bpy.ops.flowmotion.generate.poll()
    report["panel_refused"] = [line for line in draw("FLOWMOTION_PT_main_view3d") if line[0] == "label"]
    scene.flowmotion.long_shot = "FIRST"
    report["panel_first"] = [line for line in draw("FLOWMOTION_PT_main_view3d") if line[0] == "label"]
    report["generate"] += press()
    land(scene)
    report["renders"] = len(renders)
    report.update(take_report(scene))
    return report


def rendering(options: dict) -> dict:
    """The playblast renders one image per tick, leaving the artist's settings in place between
    them; cancelling it mid-way sends nothing and leaves no files."""
    report, scene = shot_ready(options)
    before = full_render_settings(scene)
    press()
    take = scene.flowmotion.takes[-1]
    steps = []
    drive(
        lambda: (
            steps.append([take.state, take.step, take.total, take.describe()])
            or (take.state == "rendering" and take.step >= 4)
        ),
        30,
        watch=scene,
    )
    report["steps"] = steps
    report["between_images"] = full_render_settings(scene) == before
    report["cancel"] = sorted(bpy.ops.flowmotion.cancel())

    def playblast_folders() -> list[str]:
        return [str(p) for p in Path(os.environ["TMPDIR"]).glob("flowmotion-playblast-*")]

    drive(lambda: take.state == "cancelled" and not playblast_folders(), 10)
    report["playblast_folders"] = playblast_folders()
    report.update(take_report(scene))
    return report


def variations(options: dict) -> dict:
    """One Generate asks for three takes of the shot, each with its own seed."""
    report, scene = shot_ready(options)
    scene.flowmotion.variations = 3
    report["generate"] = press()
    land(scene)
    report.update(take_report(scene))
    return report


def ten_in_a_row(options: dict) -> dict:
    """Ten Generates on one shot, a take landing after the third: ten distinct takes."""
    report, scene = shot_ready(options)
    takes = scene.flowmotion.takes
    report["generate"] = press(3)
    drive(lambda: takes[0].state == "imported", 60, watch=scene)
    report["landed_between"] = [take.name for take in takes if take.state == "imported"]
    hashes_then = {take.name: frame_hashes(take.folder) for take in takes if take.state == "imported"}
    report["generate"] += press(7)
    land(scene, 240)
    report.update(take_report(scene))
    report["hashes"] = {take.name: frame_hashes(take.folder) for take in takes}
    report["unchanged"] = all(report["hashes"][name] == hashes for name, hashes in hashes_then.items())
    return report


def take_actions(options: dict) -> dict:
    """Use a take again, solo it, remove it (its own frames only)."""
    report, scene = shot_ready(options)
    shot = scene.flowmotion
    shot.variations = 2
    press()
    land(scene)
    first = shot.takes[0]
    shot.active_take = 0
    shot.prompt, shot.settings.guided_steps = "a blue cube on snow", 1
    report["use"] = sorted(bpy.ops.flowmotion.use_take())
    report["shot"] = {
        "prompt": shot.prompt,
        "seed": shot.seed,
        "lock": shot.lock_seed,
        "guided_steps": shot.settings.guided_steps,
        "first_seed": first.seed,
    }
    report["solo"] = sorted(bpy.ops.flowmotion.solo_take())
    report["solo_strips"] = take_report(scene)["strips"]
    report["unsolo"] = sorted(bpy.ops.flowmotion.solo_take())
    report["unsolo_strips"] = take_report(scene)["strips"]
    report["open_poll"] = bpy.ops.flowmotion.open_take_folder.poll()
    report["panel"] = draw("FLOWMOTION_PT_main_view3d")
    report["prefs"] = draw_preferences()
    return report


def draw_preferences() -> list:
    log = []
    prefs = bpy.context.preferences.addons[EXTENSION].preferences
    type(prefs).draw(
        type(
            "Drawn",
            (),
            {
                "layout": Layout(log),
                **{
                    k: getattr(prefs, k)
                    for k in ("address", "connect_timeout", "server_public_key", "client_public_key")
                },
            },
        )(),
        bpy.context,
    )
    return log


def online_access(options: dict) -> dict:
    """A backend off this machine is not contacted while Blender's online access is off."""
    report, scene = shot_ready(options)
    session = addon().session
    session.online_access_allowed = lambda: False
    report["loopback"] = [
        session.is_loopback(a)
        for a in (
            "tcp://127.0.0.1:5599",
            "tcp://localhost:1",
            "tcp://[::1]:5599",
            "tcp://gpu-box:5599",
            "tcp://10.0.0.2:5599",
        )
    ]
    bpy.context.preferences.addons[EXTENSION].preferences.address = "tcp://gpu-box:5599"
    try:
        report["generate"] = press()
    except RuntimeError as error:  # the operator reports an error, which bpy.ops raises without a window
        report["generate"] = str(error)
    report["connected"] = session.current() is not None
    report.update(take_report(scene))
    return report


def keyed(obj, frames_and_values, path: str = "location") -> None:
    for frame, value in frames_and_values:
        setattr(obj, path, value)
        obj.keyframe_insert(path, frame=frame)


def previs_scene(kind: str, frames: int) -> None:
    """One of three blockouts made from nothing: a cube sliding past a static camera, a ball
    bouncing towards the camera, or a camera orbiting a static set."""
    bpy.ops.wm.read_homefile(use_empty=True)
    scene = bpy.context.scene
    scene.frame_start, scene.frame_end = 1, frames
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 320, 192, 100
    bpy.ops.mesh.primitive_plane_add(size=40, location=(0.0, 0.0, 0.0))
    bpy.context.object.name = "Ground"
    bpy.ops.object.camera_add(location=(0.0, -12.0, 3.0), rotation=(1.35, 0.0, 0.0))
    camera = bpy.context.object
    scene.camera = camera
    if kind == "slide":
        bpy.ops.mesh.primitive_cube_add(size=1.5, location=(-5.0, 0.0, 0.75))
        bpy.context.object.name = "Cube"
        keyed(bpy.context.object, [(1, (-5.0, 0.0, 0.75)), (frames, (5.0, 0.0, 0.75))])
    elif kind == "bounce":
        bpy.ops.mesh.primitive_uv_sphere_add(radius=0.6, location=(0.0, 8.0, 0.6))
        ball = bpy.context.object
        ball.name = "Ball"
        hops = 3
        for index in range(hops * 2 + 1):
            frame = 1 + round(index * (frames - 1) / (hops * 2))
            y = 8.0 - 12.0 * index / (hops * 2)
            keyed(ball, [(frame, (0.0, y, 0.6 if index % 2 == 0 else 3.0))])
    elif kind == "orbit":
        for name, location in (("Box", (-1.5, 0.0, 0.75)), ("Pillar", (1.5, 1.0, 1.5))):
            bpy.ops.mesh.primitive_cube_add(size=1.5, location=location)
            bpy.context.object.name = name
        bpy.context.object.scale = (0.5, 0.5, 2.0)
        bpy.ops.object.empty_add(location=(0.0, 0.0, 1.0))
        centre = bpy.context.object
        track = camera.constraints.new("TRACK_TO")
        track.target, track.track_axis, track.up_axis = centre, "TRACK_NEGATIVE_Z", "UP_Y"
        import math

        for index in range(5):
            angle = math.radians(-90 + index * 30)
            keyed(camera, [(1 + round(index * (frames - 1) / 4), (10 * math.cos(angle), 10 * math.sin(angle), 3.0))])
    else:
        raise ValueError(kind)


def previs(options: dict) -> dict:
    """Generate on a blockout of our own making against a real backend process."""
    report = install(options["zip"])
    previs_scene(options["kind"], options.get("frames", 25))
    scene = bpy.context.scene
    save(options)
    configure(options)
    scene.flowmotion.variations = options.get("variations", 1)
    plan = addon().playblast.plan(scene, scene.flowmotion.max_side)
    report["plan"] = {"frames": len(plan.frames), "width": plan.width, "height": plan.height}
    report["generate"] = press()
    report["seconds"] = land(scene, 400)
    report.update(take_report(scene))
    report["subjects"] = [take.subjects for take in scene.flowmotion.takes]
    return report


def pixels_of(image) -> tuple:
    import numpy as np

    values = np.empty(len(image.pixels), np.float32)
    image.pixels.foreach_get(values)
    return tuple(image.size), values.tobytes()


def watch_preview(take, seconds: float = 90) -> dict:
    """Drive until the take's preview image has shown two different pictures (or the take ends):
    the steps it showed them at, and what the panel drew meanwhile."""
    import numpy as np

    seen = {"pictures": [], "steps": [], "progress_step": None, "drawn": None, "image": ""}

    def changed() -> bool:
        image = addon().previews.image_of(take)
        if image is None:
            return ended(take)
        picture = pixels_of(image)
        if not seen["pictures"]:
            seen["image"], seen["progress_step"] = image.name, take.step
            seen["drawn"] = draw("FLOWMOTION_PT_main_view3d")
            seen["users"] = image.users
        icon = addon().previews.icon_of(take)
        seen["icon_matches"] = (
            icon is not None
            and tuple(icon.image_size) == picture[0]
            and (np.array(icon.image_pixels_float[:], np.float32).tobytes() == picture[1])
        )
        if not seen["pictures"] or picture != seen["pictures"][-1]:
            seen["pictures"].append(picture)
            seen["steps"].append(take.preview_step)
        return len(seen["pictures"]) >= 2 or ended(take)

    drive(changed, seconds)
    seen["sizes"] = sorted({picture[0] for picture in seen["pictures"]})
    seen["pictures"] = len(seen["pictures"])
    return seen


def live_preview(options: dict) -> dict:
    """Two Generates on one shot: each take's preview appears and changes while it runs, and goes
    when it lands."""
    report, scene = shot_ready(options)
    runs = []
    for _ in range(2):
        assert bpy.ops.flowmotion.generate() == {"FINISHED"}
        take = scene.flowmotion.takes[-1]
        seen = watch_preview(take)
        seen["job_id"] = take.job_id
        seen["others_images"] = [run["image"] for run in runs if bpy.data.images.get(run["image"]) is not None]
        land(scene)
        seen["after_landing"] = {
            "state": take.state,
            "image_kept": bpy.data.images.get(seen["image"]) is not None,
            "icon_kept": seen["image"] in addon().previews.icons(),
            "preview_image": take.preview_image,
            "drawn": draw("FLOWMOTION_PT_main_view3d"),
        }
        runs.append(seen)
    report["runs"] = runs
    report["preview_images_left"] = [
        image.name for image in bpy.data.images if image.name.startswith(addon().previews.PREFIX)
    ]
    return report


def take_states(options: dict) -> dict:
    """Takes whose state is stored as text, as every .blend saved before the state was an enum,
    read back after the file is saved and opened again; and what the enum offers."""
    install(options["zip"])
    path = Path(os.environ["BLENDER_USER_RESOURCES"]) / "states.blend"
    takes = bpy.context.scene.flowmotion.takes
    for state in ("running", "imported", "no such state"):
        takes.add()["state"] = state  # an old file's ID property, written without the add-on's enum
    set_by_name = takes.add()
    set_by_name.state = "cancelled"
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    bpy.ops.wm.open_mainfile(filepath=str(path))
    takes = bpy.context.scene.flowmotion.takes
    return {
        "states": [take.state for take in takes],
        "stored": [take.get("state") for take in takes],
        "items": [item.identifier for item in takes[0].bl_rna.properties["state"].enum_items],
    }


SCENARIOS = {
    "take_states": take_states,
    "install": install_both,
    "subjects": subjects,
    "generate": generate,
    "reattach": reattach,
    "problems": problems,
    "playblast": playblast,
    "takes": takes,
    "secured": secured,
    "version_mismatch": version_mismatch,
    "panels": panels,
    "regenerate": regenerate,
    "two_files": two_files,
    "frame_ranges": frame_ranges,
    "preflight": preflight,
    "rendering": rendering,
    "variations": variations,
    "ten_in_a_row": ten_in_a_row,
    "take_actions": take_actions,
    "online_access": online_access,
    "previs": previs,
    "live_preview": live_preview,
}

if __name__ == "__main__":
    scenario, options = sys.argv[1], json.loads(sys.argv[2])
    result = SCENARIOS[scenario](options)
    print("\nREPORT " + json.dumps(result, default=str), flush=True)
