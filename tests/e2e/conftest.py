import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.blender_addon.conftest import addon_zips, run_blender  # noqa: F401  (fixture and helper)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """The tests' tiny model as a diffusers folder, loaded by the backend as a real model would be."""
    from flowmotion.tiny import build_tiny_pipeline

    folder = tmp_path_factory.mktemp("tiny-model")
    build_tiny_pipeline().save_pretrained(folder)
    return folder


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class BackendProcess:
    """`flowmotion-backend serve` as the artist's workstation runs it: its own process, the embedded
    model, a job store on disk, a fixed loopback port so a restart comes back at the same address."""

    def __init__(self, model: Path, jobs: Path, log: Path, port: int | None = None):
        self.model, self.jobs, self.log = model, jobs, log
        self.address = f"tcp://127.0.0.1:{port or free_port()}"
        self.process: subprocess.Popen | None = None
        self.starts = 0

    def start(self, timeout: float = 120) -> "BackendProcess":
        command = [
            sys.executable,
            "-m",
            "backend.cli",
            "serve",
            "--bind",
            self.address,
            "--jobs",
            str(self.jobs),
            "--model",
            str(self.model),
            "--device",
            "cpu",
        ]
        with self.log.open("a") as log:
            self.process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"},
            )
        deadline = time.monotonic() + timeout
        while self.log.read_text().count("serving ") < self.starts + 1 and time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the backend exited {self.process.returncode}:\n{self.log.read_text()}")
            time.sleep(0.1)
        if time.monotonic() >= deadline:
            self.kill()
            raise AssertionError(f"the backend did not start within {timeout} s:\n{self.log.read_text()}")
        self.starts += 1
        return self

    def stop(self, timeout: float = 30) -> int:
        """A clean shutdown, as Ctrl+C gives it."""
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout)
        finally:
            self.kill()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
