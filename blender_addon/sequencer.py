"""Takes on disk and in the Video Sequencer."""

from __future__ import annotations

import shutil
from pathlib import Path

import bpy

from . import durable

STRIP_PROPERTY_PREFIX = "flowmotion_"


def safe_name(text: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-_" else "_" for c in text).strip("_")
    return cleaned or "shot"


OWNER_FILE = ".flowmotion-take"
"""Written into every take folder: the job id of the take whose frames it holds."""


class TakeFolderError(Exception):
    """A take's frames cannot be written; the message says why."""


def take_folder(scene, take_name: str, job_id: str) -> Path:
    """Where a take's frames go: //flowmotion/<file>/<shot>/<take>-<job>/ next to the saved .blend.
    The file's name and the job's own part keep apart the takes of two files in one folder, and
    of two takes that once had the same name."""
    if not bpy.data.filepath:
        raise TakeFolderError("the .blend is not saved: save it, then re-import the take")
    blend = safe_name(Path(bpy.data.filepath).stem)
    job = safe_name(job_id.rsplit("-", 1)[-1])
    return Path(bpy.path.abspath(f"//flowmotion/{blend}/{safe_name(scene.name)}/{take_name}-{job}"))


def owner(folder: Path) -> str | None:
    """The job id of the take a folder holds, or None when the add-on did not write it."""
    try:
        return (folder / OWNER_FILE).read_text().strip() or None
    except OSError:
        return None


def owns(folder: Path, job_id: str) -> bool:
    return bool(job_id) and owner(folder) == job_id


def write_frames(folder: Path, frames: list[bytes], job_id: str) -> tuple[Path, list[str]]:
    """Write a take's PNG frames all or nothing, through the durable helper: into a hidden
    staging folder, fsynced, then moved into place. Only a folder this job wrote before is
    replaced; one that holds anything else is left alone and the frames go to a new folder beside
    it. Returns the folder and the frame names."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    target, number = folder, 1
    while target.exists() and not owns(target, job_id):
        number += 1
        target = folder.with_name(f"{folder.name}-{number}")
    names = [f"frame_{number:04d}.png" for number in range(1, len(frames) + 1)]
    with durable.staged_folder(target) as staging:
        for name, frame in zip(names, frames, strict=True):
            (staging / name).write_bytes(frame)
        (staging / OWNER_FILE).write_text(job_id + "\n")
        # The earlier frames of this job go only once the new ones are whole on disk.
        if target.exists():
            shutil.rmtree(target)
    return target, names


def remove_take_folder(folder: Path, job_id: str) -> bool:
    """Delete a take's folder if, and only if, it holds this job's frames; whether it did."""
    if folder.is_dir() and owns(folder, job_id):
        shutil.rmtree(folder, ignore_errors=True)
        return True
    return False


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


def add_strip(scene, name: str, folder: Path, names: list[str], properties: dict, start: int | None = None):
    """An image-sequence strip of the take from `start` (the shot's first frame when None), one
    image per frame, on a free channel."""
    editor = scene.sequence_editor_create()
    start = scene.frame_start if start is None else start
    channel = free_channel(scene, start, len(names))
    strip = editor.strips.new_image(
        name=name, filepath=str(folder / names[0]), channel=channel, frame_start=start, fit_method="FIT"
    )
    for frame_name in names[1:]:
        strip.elements.append(frame_name)
    for key, value in properties.items():
        strip[STRIP_PROPERTY_PREFIX + key] = value
    return strip


def remove_strip(scene, name: str) -> None:
    editor = scene.sequence_editor
    if editor is not None and name in editor.strips_all:
        editor.strips.remove(editor.strips_all[name])
