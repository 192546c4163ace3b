"""Takes on disk and in the Video Sequencer."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import bpy

STRIP_PROPERTY_PREFIX = "flowmotion_"


def safe_name(text: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-_" else "_" for c in text).strip("_")
    return cleaned or "shot"


def take_folder(scene, take_name: str, job_id: str) -> tuple[Path, bool]:
    """Where a take's frames go: //flowmotion/<shot>/<take>/ next to the .blend, or, for an unsaved
    file, a temporary folder named after the job, which no other file's take can share. The flag
    says whether the folder is temporary."""
    if bpy.data.filepath:
        return Path(bpy.path.abspath(f"//flowmotion/{safe_name(scene.name)}/{take_name}")), False
    return Path(tempfile.gettempdir()) / "flowmotion" / safe_name(job_id), True


def is_take_folder(folder: Path) -> bool:
    """Whether the add-on made this folder for a take (so removing the take may delete it)."""
    return folder.parent.name == "flowmotion" or folder.parent.parent.name == "flowmotion"


def write_frames(folder: Path, frames: list[bytes]) -> list[str]:
    """Write PNG frames all or nothing: into a staging folder first, then moved into place."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    names = [f"frame_{number:04d}.png" for number in range(1, len(frames) + 1)]
    try:
        for name, frame in zip(names, frames):
            (staging / name).write_bytes(frame)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return names


def free_channel(scene, start: int, length: int) -> int:
    """The lowest channel with nothing between start and start + length."""
    editor = scene.sequence_editor
    busy = set()
    if editor is not None:
        for strip in editor.strips_all:
            if strip.frame_final_start < start + length and start < strip.frame_final_end:
                busy.add(strip.channel)
    channel = 1
    while channel in busy:
        channel += 1
    return channel


def add_strip(scene, name: str, folder: Path, names: list[str], properties: dict):
    """An image-sequence strip of the take at the shot's first frame, on a free channel."""
    editor = scene.sequence_editor_create()
    start = scene.frame_start
    channel = free_channel(scene, start, len(names))
    strip = editor.strips.new_image(name=name, filepath=str(folder / names[0]), channel=channel, frame_start=start,
                                    fit_method="FIT")
    for frame_name in names[1:]:
        strip.elements.append(frame_name)
    for key, value in properties.items():
        strip[STRIP_PROPERTY_PREFIX + key] = value
    return strip


def remove_strip(scene, name: str) -> None:
    editor = scene.sequence_editor
    if editor is not None and name in editor.strips_all:
        editor.strips.remove(editor.strips_all[name])
