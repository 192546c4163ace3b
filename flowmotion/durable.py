"""Writes that survive a crash: a file or a folder of files appears whole or not at all.

Every write here goes to a hidden staging name in the target's own folder (the same file system,
so the last step is one rename), is flushed and fsynced, is renamed onto the target, and then the
folder itself is fsynced so the rename outlives a power cut. A failure at any step, an exception
or Ctrl-C, removes the staging file or folder; a process killed outright leaves one behind under
STAGING_PREFIX, which `remove_leftovers` clears at the next start.

Why here: the library (`flowmotion`), the backend and the Blender add-on all write files that
must not tear. This module is a leaf of the library: pure standard library, importing nothing of
the project, so the backend imports it as `flowmotion.durable`, and build_addon.py copies this one
file into the add-on's zip beside its copy of `protocol/` (the add-on cannot import the library,
which brings torch). One implementation of the rules above, instead of one per caller.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

STAGING_PREFIX = ".staging-"
"""Every staging file and folder starts with it: hidden, and known to `remove_leftovers`."""


def _staging_name(target: Path) -> Path:
    # The target's name keeps a file's suffix (a video writer picks its container by it); a random
    # part keeps two writers of one target apart.
    stem, suffix = target.stem[:40], target.suffix[:16]
    return target.with_name(f"{STAGING_PREFIX}{stem}-{secrets.token_hex(6)}{suffix}")


def sync_folder(folder: str | os.PathLike) -> None:
    """Make the renames and new names in `folder` survive a power cut (POSIX; Windows has no folder handles)."""
    if os.name != "posix":
        return
    handle = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def sync_file(path: str | os.PathLike) -> None:
    """Flush a file written by someone else's code (a video encoder, a tensor writer) to the disk."""
    with open(path, "rb+") as stream:
        os.fsync(stream.fileno())


def sync_tree(folder: str | os.PathLike) -> None:
    """fsync every file and folder under `folder`, the folder itself last."""
    for parent, folders, files in os.walk(os.fspath(folder), topdown=False):
        for name in files:
            sync_file(os.path.join(parent, name))
        for name in folders:
            sync_folder(os.path.join(parent, name))
    sync_folder(folder)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@contextlib.contextmanager
def replacing(target: str | os.PathLike, mode: int = 0o666) -> Iterator[Path]:
    """A staging path beside `target` for code that writes by path; when the block ends without
    an exception the file is fsynced and renamed onto `target`, else it is removed.

        with replacing(out) as staged:
            save_file(tensors, staged)
    """
    target = Path(target)
    staged = _staging_name(target)
    os.close(os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode))  # mode before the umask, as open() does
    try:
        yield staged
        sync_file(staged)
        os.replace(staged, target)
    except BaseException:
        _remove(staged)
        raise
    sync_folder(target.parent)


def write_bytes(target: str | os.PathLike, data: bytes, mode: int = 0o666) -> None:
    """Replace `target` with `data`, whole or not at all. `mode` (before the umask) is for a
    file that is private to its owner, 0o600."""
    with replacing(target, mode) as staged, open(staged, "wb") as stream:
        stream.write(data)


def write_text(target: str | os.PathLike, text: str, mode: int = 0o666, encoding: str = "utf-8") -> None:
    write_bytes(target, text.encode(encoding), mode)


@contextlib.contextmanager
def staged_folder(target: str | os.PathLike, mode: int = 0o777) -> Iterator[Path]:
    """A hidden empty folder beside `target` to fill; when the block ends without an exception
    everything in it is fsynced and the folder is renamed to `target`, else it is removed.

    `target` must not exist when the block ends, or be an empty folder: one that holds an
    earlier result is cleared by the caller inside the block, after the new one is written, so a
    failure before that leaves the earlier result as it was.
    """
    target = Path(target)
    staging = _staging_name(target)
    os.mkdir(staging, mode)
    try:
        yield staging
        sync_tree(staging)
        os.replace(staging, target)
    except BaseException:
        _remove(staging)
        raise
    sync_folder(target.parent)


def remove_leftovers(folder: str | os.PathLike) -> list[str]:
    """Remove the staging files and folders a killed writer left in `folder`; their names.
    Only for a folder no other process is writing into now (one that its owner holds a lock on,
    or at the owner's start)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    left = sorted(p for p in folder.iterdir() if p.name.startswith(STAGING_PREFIX))
    for path in left:
        _remove(path)
    return [path.name for path in left]
