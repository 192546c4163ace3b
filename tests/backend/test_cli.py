import os
import signal
import subprocess
import sys
import time

import imageio.v3 as iio

from backend.cli import main

from .conftest import TIMEOUT, playblast


def write_playblast(folder, **shape):
    folder.mkdir()
    for number, frame in enumerate(playblast(**shape), start=1):
        (folder / f"frame_{number:04d}.png").write_bytes(frame)
    return folder


def test_submit_wait_status_list_and_fetch(backend, tmp_path, capsys):
    source = write_playblast(tmp_path / "blast")
    address = ["--address", backend.address, "--timeout", str(TIMEOUT)]
    assert main(["submit", str(source), "--prompt", "a red ball", "--job-id", "cli-1", "--wait", *address]) == 0
    assert "cli-1: done" in capsys.readouterr().out
    assert main(["status", "cli-1", *address]) == 0
    assert capsys.readouterr().out.strip() == "cli-1: done"
    assert main(["list", *address]) == 0
    assert "cli-1: done - a red ball" in capsys.readouterr().out
    out = tmp_path / "take"
    assert main(["fetch", "cli-1", "--out", str(out), *address]) == 0
    frames = sorted(out.glob("*.png"))
    assert len(frames) == 5 and iio.imread(frames[0]).shape == (32, 48, 3)


def test_unreachable_backend_fails_within_the_timeout(tmp_path, capsys):
    started = time.monotonic()
    assert main(["status", "x", "--address", "tcp://127.0.0.1:9", "--timeout", "0.5"]) == 2
    assert time.monotonic() - started < 3
    assert "did not answer within 0.5 s: is `flowmotion-backend serve` running" in capsys.readouterr().err


def test_unknown_job_is_a_clear_error(backend, capsys):
    assert main(["fetch", "nope", "--out", "unused", "--address", backend.address]) == 2
    assert "no job 'nope'" in capsys.readouterr().err


def test_serve_runs_until_terminated(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(
        [sys.executable, "-m", "backend.cli", "serve", "--bind", "tcp://127.0.0.1:*", "--jobs",
         str(tmp_path / "jobs"), "--device", "cpu"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
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
        finally:
            server.send_signal(signal.SIGTERM)
            tail = server.communicate(timeout=30)[0]
        assert server.returncode == 0 and "stopping" in tail
