import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).with_name("blender_driver.py")
HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items):
    """Every test in this folder drives real Blender: `-m "not blender"` leaves them out."""
    for item in items:
        if HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.blender)


@pytest.fixture(scope="session")
def addon_zips(tmp_path_factory):
    """The extension zips, built once by build_addon.py (which validates them with Blender's validator)."""
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "build_addon.py"),
            "--out",
            str(out),
            "--wheels-cache",
            str(ROOT / ".wheels-cache"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return {"output": result.stdout, "py311": next(out.glob("*-py311.zip")), "py313": next(out.glob("*-py313.zip"))}


def run_blender(scenario: str, options: dict, user_folder: Path, timeout: float = 240) -> dict:
    """One scenario in a fresh Blender process with an isolated user folder; its JSON report."""
    # Blender's temporary files (playblasts, takes of unsaved files) stay in the test's folder too.
    temporary = user_folder / "tmp"
    temporary.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "BLENDER_USER_RESOURCES": str(user_folder),
        "HF_HUB_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
        "TMPDIR": str(temporary),
    }
    result = subprocess.run(
        [sys.executable, str(DRIVER), scenario, json.dumps(options, default=str)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=str(user_folder),
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("REPORT ")]
    assert result.returncode == 0 and lines, f"blender exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return json.loads(lines[-1][len("REPORT ") :])


@pytest.fixture(scope="session")
def live_backend(tmp_path_factory):
    """A backend with the tiny model on a random loopback port, shared by the Blender tests."""
    from flowmotion.tiny import build_tiny_pipeline
    from tests.backend.conftest import Backend

    # A preview every step: the tiny model's steps are far shorter than the backend's default spacing.
    backend = Backend(build_tiny_pipeline(), tmp_path_factory.mktemp("jobs"), preview_every=0.0).start()
    yield backend
    backend.stop()
