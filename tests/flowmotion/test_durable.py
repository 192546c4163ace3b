"""`flowmotion.durable`: a file or folder appears whole or not at all, is synced before and after its rename,
and leaves nothing behind when a write fails."""

import os
import stat
import subprocess
import sys

import pytest

from flowmotion import durable


def hidden(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.fixture
def journal(monkeypatch):
    """Every fsync and rename, in order: ('fsync', what) or ('replace', target name)."""
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(handle):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{handle}")))
        real_fsync(handle)

    def replace(source, target):
        events.append(("replace", os.fspath(target)))
        real_replace(source, target)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return events


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="names fsynced handles through /proc")
def test_a_file_is_synced_then_renamed_then_its_folder_synced(tmp_path, journal):
    target = tmp_path / "manifest.json"
    durable.write_text(target, '{"state": "queued"}')
    assert target.read_text() == '{"state": "queued"}' and hidden(tmp_path) == []
    (kind, staged), rename, folder = journal
    assert kind == "fsync" and os.path.basename(staged).startswith(".staging-manifest-")
    assert rename == ("replace", str(target)) and folder == ("fsync", str(tmp_path))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="names fsynced handles through /proc")
def test_a_folder_is_synced_file_by_file_then_renamed_then_its_parent_synced(tmp_path, journal):
    with durable.staged_folder(tmp_path / "result") as staging:
        (staging / "frames").mkdir()
        (staging / "frames" / "frame_0001.png").write_bytes(b"one")
        (staging / "ending.json").write_text("{}")
    synced = [os.path.relpath(what, staging) for kind, what in journal[:-2]]
    frame = os.path.join("frames", "frame_0001.png")
    assert sorted(synced) == sorted([".", "ending.json", "frames", frame])
    assert synced.index(frame) < synced.index("frames") < synced.index(".") == len(synced) - 1  # contents first
    assert journal[-2:] == [("replace", str(tmp_path / "result")), ("fsync", str(tmp_path))]
    assert (tmp_path / "result" / "frames" / "frame_0001.png").read_bytes() == b"one" and hidden(tmp_path) == []


def test_a_failure_while_writing_a_file_leaves_the_old_one_and_no_staging(tmp_path):
    target = tmp_path / "take.mp4"
    target.write_bytes(b"the earlier take")
    with pytest.raises(RuntimeError, match="encoder died"), durable.replacing(target) as staged:
        staged.write_bytes(b"half a ta")
        assert staged.suffix == ".mp4"  # an encoder picks its container by the suffix
        raise RuntimeError("encoder died")
    assert target.read_bytes() == b"the earlier take" and hidden(tmp_path) == []


def test_a_failure_of_the_sync_or_the_rename_leaves_no_staging(tmp_path, monkeypatch):
    def full_disk(handle):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(os, "fsync", full_disk)
        with pytest.raises(OSError, match="No space"):
            durable.write_bytes(tmp_path / "a.json", b"{}")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "folder.json").mkdir()  # a file cannot replace a folder
    with pytest.raises(OSError):
        durable.write_bytes(tmp_path / "folder.json", b"{}")
    assert [p.name for p in tmp_path.iterdir()] == ["folder.json"]


def test_a_failure_while_filling_a_folder_leaves_the_earlier_one_and_no_staging(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "frame_0001.png").write_bytes(b"earlier")
    with pytest.raises(KeyboardInterrupt), durable.staged_folder(tmp_path / "out") as staging:
        (staging / "frame_0001.png").write_bytes(b"new")
        raise KeyboardInterrupt
    assert (tmp_path / "out" / "frame_0001.png").read_bytes() == b"earlier" and hidden(tmp_path) == []
    with pytest.raises(OSError), durable.staged_folder(tmp_path / "out") as staging:
        (staging / "frame_0001.png").write_bytes(b"new")  # the caller did not clear the earlier one
    assert hidden(tmp_path) == []


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_modes_follow_the_umask_or_are_private(tmp_path):
    durable.write_bytes(tmp_path / "shared", b"x")
    durable.write_bytes(tmp_path / "private", b"x", mode=0o600)
    with durable.staged_folder(tmp_path / "job", mode=0o700):
        pass
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "shared").stat().st_mode) == 0o666 & ~umask
    assert stat.S_IMODE((tmp_path / "private").stat().st_mode) == 0o600 & ~umask
    assert stat.S_IMODE((tmp_path / "job").stat().st_mode) == 0o700 & ~umask


def test_leftovers_of_a_killed_writer_are_removed_and_nothing_else(tmp_path):
    (tmp_path / ".staging-manifest-1a2b.json").write_text("{ half")
    (tmp_path / ".staging-result-3c4d").mkdir()
    (tmp_path / ".staging-result-3c4d" / "frame_0001.png").write_bytes(b"x")
    (tmp_path / "manifest.json").write_text("{}")
    (tmp_path / ".lock").write_text("")
    assert durable.remove_leftovers(tmp_path) == [".staging-manifest-1a2b.json", ".staging-result-3c4d"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", "manifest.json"]


def test_durable_imports_only_the_standard_library():
    # The add-on's zip carries a copy of this one file: loaded on its own, it may need nothing else.
    check = (
        "import importlib.util, sys; before = set(sys.modules); "
        f"spec = importlib.util.spec_from_file_location('durable', {durable.__file__!r}); "
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module); "
        "print(sorted(m for m in set(sys.modules) - before if m.split('.')[0] not in sys.stdlib_module_names))"
    )
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_the_library_writes_through_durable_and_still_knows_nothing_of_protocol_or_backend():
    check = (
        "import sys, flowmotion, flowmotion.cache, flowmotion.video; "
        "print('flowmotion.durable' in sys.modules, "
        "sorted({m.split('.')[0] for m in sys.modules} & {'protocol', 'backend', 'zmq', 'msgpack'}))"
    )
    root = os.path.dirname(os.path.dirname(durable.__file__))
    out = subprocess.run(
        [sys.executable, "-c", check],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env={**os.environ, "PYTHONPATH": root},
    )
    assert out.stdout.strip() == "True []"
