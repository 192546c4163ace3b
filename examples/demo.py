"""The whole loop, headless: Blender shot -> playblast -> backend -> take in the Sequencer.

    python examples/demo.py [--prompt "..."] [--seed 7] [--out out/demo]

Builds the add-on zip, installs it into a Blender user folder of its own, starts
`flowmotion-backend serve` on loopback with the embedded model, opens examples/shot.blend (a
held-out shot of the embedded model's Blender world, see make_sample_shot.py), presses Generate
through the add-on's own operator, waits for the take to land as a strip, saves the .blend, and
writes a side-by-side video and a contact sheet (playblast | take). Last, it says how closely the
take's subject follows the playblast's, with the blockout benchmark's figure.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXTENSION = "bl_ext.user_default.flowmotion_previs"


def start_backend(jobs: Path) -> tuple[subprocess.Popen, str]:
    """flowmotion-backend on a free loopback port; returns the process and its address."""
    # The backend works the embedded model at its training area and scales the take back up.
    command = [
        sys.executable,
        "-m",
        "backend.cli",
        "serve",
        "--bind",
        "tcp://127.0.0.1:*",
        "--jobs",
        str(jobs),
        "--device",
        "cpu",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        print("  backend:", line.rstrip())
        if line.startswith("serving"):
            return process, line.split(" at ", 1)[1].split(";", 1)[0]
    process.kill()
    raise SystemExit("the backend did not start")


def build_zip(out: Path) -> Path:
    result = subprocess.run(
        [sys.executable, str(ROOT / "build_addon.py"), "--out", str(out)], cwd=ROOT, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise SystemExit(result.stdout + result.stderr)
    return next(out.glob("*-py311.zip"))


def generate_in_blender(zip_path: Path, blend: Path, address: str, prompt: str, seed: int) -> dict:
    import bpy

    bpy.ops.extensions.package_install_files(filepath=str(zip_path), repo="user_default", enable_on_install=True)
    addon = sys.modules[EXTENSION]
    bpy.ops.wm.open_mainfile(filepath=str(ROOT / "examples" / "shot.blend"))
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    prefs = bpy.context.preferences.addons[EXTENSION].preferences
    prefs.address, prefs.connect_timeout = address, 30.0
    shot = bpy.context.scene.flowmotion
    shot.prompt, shot.seed, shot.lock_seed = prompt, seed, True  # the seed asked for, not a new one
    plan = addon.playblast.plan(bpy.context.scene, shot.max_side)
    print(f"playblast: {plan.describe()} of {bpy.context.scene.name}")
    if bpy.ops.flowmotion.generate() != {"FINISHED"}:
        raise SystemExit(f"Generate failed: {shot.status}")
    take = shot.takes[-1]
    last = ""
    deadline = time.monotonic() + 600
    while take.state not in ("imported", "failed", "cancelled") and time.monotonic() < deadline:
        addon.session.tick()  # timers do not run without a window: drive the add-on's timer ourselves
        status = f"{take.state} {take.phase} {take.step}/{take.total}"
        if status != last:
            print(" ", status)
            last = status
        time.sleep(0.05)
    if take.state != "imported":
        raise SystemExit(f"the take ended {take.state}: {take.message}")
    bpy.ops.wm.save_mainfile()
    strip = bpy.context.scene.sequence_editor.strips_all[take.strip_name]
    return {
        "job_id": take.job_id,
        "folder": Path(take.folder),
        "strip": strip.name,
        "channel": strip.channel,
        "start": strip.frame_final_start,
        "frames": len(strip.elements),
    }


def write_comparisons(source: list[Path], result: list[Path], out: Path, fps: float) -> tuple[Path, Path]:
    import imageio.v3 as iio
    import numpy as np

    left = np.stack([iio.imread(p)[..., :3] for p in source])
    right = np.stack([iio.imread(p)[..., :3] for p in result])
    gap = np.full((len(left), left.shape[1], 4, 3), 255, np.uint8)
    side_by_side = np.concatenate([left, gap, right], axis=2)
    video = out / "side_by_side.mp4"
    iio.imwrite(video, side_by_side, fps=fps, codec="libx264", plugin="FFMPEG", macro_block_size=1, quality=8)
    picks = np.linspace(0, len(left) - 1, 6).round().astype(int)
    rows = [np.concatenate([frames[i] for i in picks], axis=1) for frames in (left, right)]
    sheet = out / "contact_sheet.png"
    iio.imwrite(sheet, np.concatenate([rows[0], np.full((4, rows[0].shape[1], 3), 255, np.uint8), rows[1]]))
    return video, sheet


def prompt_color(prompt: str) -> str | None:
    """The embedded model's colour word the prompt names, if any: how the take's subject is found."""
    from flowmotion.toy.data import COLORS

    named = [word for word in prompt.lower().replace(",", " ").split() if word in COLORS]
    return named[0] if named else None


def following(result: Path, masks: Path, prompt: str) -> list[str]:
    """How closely the take's subject follows the playblast's subject, in words: the blockout
    benchmark's figure (its distance against a subject that stands still at its average spot or
    at the frame centre, whichever is nearer) and the frames it is on the subject in."""
    from flowmotion.toy.metrics import subject_following
    from flowmotion.video import read_video

    if not masks.is_dir():
        return ["the shot had no moving subjects, so no subject masks went along"]
    frames, subject = read_video(result)[0], read_video(masks, alpha_is_mask=True)[0][..., 0]
    color = prompt_color(prompt)
    figure = subject_following(frames, subject, color)
    parked = "the subject's average spot" if figure.parked <= figure.centre else "the frame centre"
    tolerance = max(frames.shape[1:3]) / 10
    on_subject, shown = int((figure.per_frame <= tolerance).sum()), int(figure.found.sum())
    count = len(figure.per_frame)
    colour_lines = [f"the take shows a {color} subject in {shown} of {count} frames"] if color else []
    return [
        f"the take's {color + ' ' if color else ''}subject is on average {figure.take:.0f} px from the "
        f"playblast's subject; standing still at {parked} it would be "
        f"{figure.better_baseline:.0f} px away",
        f"that is {figure.ratio:.2f} times as far as standing still (under 1: the take follows the "
        f"blocking; the benchmark's goal is 0.5)",
        f"the take's subject is within {tolerance:.0f} px of the playblast's subject in {on_subject} of {count} frames",
        *colour_lines,
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompt", default="a red ball on grass")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "demo")
    args = parser.parse_args()
    out = args.out.resolve()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    os.environ["BLENDER_USER_RESOURCES"] = str(out / "blender-user")  # before bpy is imported

    zip_path = build_zip(out / "dist")
    print(f"add-on: {zip_path.name}")
    backend, address = start_backend(out / "jobs")
    try:
        take = generate_in_blender(zip_path, out / "shot010.blend", address, args.prompt, args.seed)
    finally:
        backend.send_signal(signal.SIGINT)
        backend.wait(30)
    source = sorted((out / "jobs" / take["job_id"] / "source").glob("frame_*.png"))
    result = sorted(take["folder"].glob("frame_*.png"))
    video, sheet = write_comparisons(source, result, out, fps=12)
    print(f"\ntake {take['strip']}: {take['frames']} frames on channel {take['channel']} at frame {take['start']}")
    for number, line in enumerate(following(take["folder"], out / "jobs" / take["job_id"] / "subjects", args.prompt)):
        print(f"{'following:' if number == 0 else '':15}{line}")
    print(f"blend file:    {out / 'shot010.blend'}")
    print(f"take frames:   {take['folder']}")
    print(f"side by side:  {video}")
    print(f"contact sheet: {sheet}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
