import os
import signal
import socket
import subprocess
import sys
import time

import imageio.v3 as iio
import pytest

from backend.cli import main, setting
from backend.errors import BackendError
from backend.lock import StoreLock

from .conftest import FAST, TIMEOUT, playblast


def write_playblast(folder, **shape):
    folder.mkdir()
    for number, frame in enumerate(playblast(**shape), start=1):
        (folder / f"frame_{number:04d}.png").write_bytes(frame)
    return folder


def test_submit_wait_status_list_and_fetch(backend, tmp_path, capsys):
    source = write_playblast(tmp_path / "blast")
    address = ["--address", backend.address, "--timeout", str(TIMEOUT)]
    fast = [part for name, value in FAST.items() for part in ("--set", f"{name}={value}")]
    assert (
        main(
            [
                "submit",
                str(source),
                "--prompt",
                "a red ball",
                "--job-id",
                "cli-1",
                "--shot",
                "sh010",
                "--wait",
                *fast,
                *address,
            ]
        )
        == 0
    )
    assert "cli-1: done" in capsys.readouterr().out
    job = backend.server.store.get("cli-1")
    assert job.settings == FAST and job.shot == "sh010"
    assert main(["status", "cli-1", *address]) == 0
    assert capsys.readouterr().out.strip() == "cli-1: done"
    assert main(["list", *address]) == 0
    assert "cli-1: done - a red ball" in capsys.readouterr().out
    out = tmp_path / "take"
    assert main(["fetch", "cli-1", "--out", str(out), *address]) == 0
    frames = sorted(out.glob("*.png"))
    assert len(frames) == 5 and iio.imread(frames[0]).shape == (32, 48, 3)
    (out / "frame_0009.png").write_bytes(b"from an earlier, longer take")
    assert main(["fetch", "cli-1", "--out", str(out), *address]) == 0  # replaces an earlier fetch whole
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    assert [p.name for p in sorted(out.iterdir())] == [f"frame_{n:04d}.png" for n in range(1, 6)]
    (out / "notes.txt").write_text("keep me")
    assert main(["fetch", "cli-1", "--out", str(out), *address]) == 2
    assert "already holds other files (notes.txt)" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "keep me" and len(list(out.glob("*.png"))) == 5


def test_submit_sends_a_folder_of_subject_masks_and_refuses_a_short_one(backend, tmp_path, capsys):
    source = write_playblast(tmp_path / "blast")
    masks = write_playblast(tmp_path / "subjects")
    address = ["--address", backend.address, "--timeout", str(TIMEOUT)]
    fast = [part for name, value in FAST.items() for part in ("--set", f"{name}={value}")]
    assert (
        main(
            [
                "submit",
                str(source),
                "--prompt",
                "a cube",
                "--subject-masks",
                str(masks),
                "--job-id",
                "masked",
                "--wait",
                *fast,
                *address,
            ]
        )
        == 0
    )
    assert backend.server.store.get("masked").mask_count == 5
    (masks / "frame_0005.png").unlink()
    assert main(["submit", str(source), "--prompt", "a cube", "--subject-masks", str(masks), *address]) == 2
    assert "holds 4 PNG masks but" in capsys.readouterr().err


def test_unreachable_backend_fails_within_the_timeout(tmp_path, capsys):
    assert main(["status", "x", "--address", "tcp://127.0.0.1:9", "--timeout", "0.5"]) == 2
    assert "did not answer within 0.5 s: is `flowmotion-backend serve` running" in capsys.readouterr().err


@pytest.mark.parametrize(
    "text, parsed",
    [
        ("guided_steps=5", ("guided_steps", 5)),
        ("guidance_scale=5.5", ("guidance_scale", 5.5)),
        ("difference_alignment=False", ("difference_alignment", False)),
        ("source_motion=noisy", ("source_motion", "noisy")),
    ],
)
def test_settings_on_the_command_line_keep_their_kind(text, parsed):
    assert setting(text) == parsed


def test_a_setting_without_a_value_is_refused(capsys):
    with pytest.raises(SystemExit):
        main(["submit", "frames", "--prompt", "p", "--set", "guided_steps"])
    assert "'guided_steps' is not NAME=VALUE" in capsys.readouterr().err


def test_unknown_job_is_a_clear_error(backend, capsys):
    assert main(["fetch", "nope", "--out", "unused", "--address", backend.address]) == 2
    assert "no job 'nope'" in capsys.readouterr().err


@pytest.mark.slow  # a backend process of its own, loading the embedded model
def test_serve_runs_until_terminated(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(
        [
            sys.executable,
            "-m",
            "backend.cli",
            "serve",
            "--bind",
            "tcp://127.0.0.1:*",
            "--jobs",
            str(tmp_path / "jobs"),
            "--device",
            "cpu",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    ) as server:
        lines = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = server.stdout.readline()
            lines.append(line)
            if line.startswith("serving") or not line:
                break
        try:
            assert lines[-1].startswith("serving embedded on cpu at tcp://127.0.0.1:"), "".join(lines)
            assert "the embedded model" in "".join(lines)
            with pytest.raises(BackendError, match=f"in use by another backend \\(process {server.pid} on "):
                StoreLock(tmp_path / "jobs").acquire()
        finally:
            server.send_signal(signal.SIGTERM)
            tail = server.communicate(timeout=30)[0]
        assert server.returncode == 0 and "stopping" in tail


def serve_command(jobs) -> list[str]:
    return [
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


def test_a_second_backend_on_the_same_job_store_refuses_to_start_naming_the_first(tmp_path):
    jobs = tmp_path / "jobs"
    held = StoreLock(jobs).acquire()
    try:
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        second = subprocess.run(serve_command(jobs), capture_output=True, text=True, env=env, timeout=120)
    finally:
        held.release()
    assert second.returncode == 2 and "serving" not in second.stdout
    assert (
        f"the job store {jobs} is in use by another backend (process {os.getpid()} on {socket.gethostname()}, "
        f"started {time.strftime('%Y-%m-%d', time.gmtime())}" in second.stderr
    )
    assert "give this one a job store of its own with --jobs" in second.stderr


def test_the_lock_goes_with_its_process_even_on_kill_9(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from backend.lock import StoreLock; "
            "lock = StoreLock(sys.argv[1]).acquire(); print('held', flush=True); sys.stdin.read()",
            str(tmp_path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(BackendError, match=f"process {holder.pid} on"):
            StoreLock(tmp_path).acquire()
    finally:
        holder.kill()
        holder.wait(30)
    StoreLock(tmp_path).acquire().release()


@pytest.mark.parametrize("value", ["-1", "soon", "inf", "nan"])
def test_serve_refuses_a_preview_spacing_that_is_not_seconds(value, capsys):
    with pytest.raises(SystemExit) as exit_code:
        main(["serve", "--preview-every", value])
    assert exit_code.value.code == 2
    assert f"{value!r} is not a number of seconds" in capsys.readouterr().err
