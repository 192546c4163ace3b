"""Three blockouts of our own, 320x192 and 25 frames, through a real backend process: each take
covers its shot frame for frame, with the shot's own subjects (none for a camera-only move)."""

import json

import imageio.v3 as iio
import numpy as np
import pytest

from .conftest import BackendProcess, run_blender

# Real Blender and a backend process: minutes, not seconds.
pytestmark = [pytest.mark.blender, pytest.mark.slow]


@pytest.fixture(scope="module")
def backend(tiny_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("previs-backend")
    process = BackendProcess(tiny_model, folder / "jobs", folder / "backend.log").start()
    yield process
    process.kill()


def manifest(backend, job_id: str) -> dict:
    """What the running backend recorded of a job (read from its store, which it owns)."""
    return json.loads((backend.jobs / job_id / "manifest.json").read_text())


def playblast(backend, job_id: str) -> np.ndarray:
    frames = sorted((backend.jobs / job_id / "source").glob("frame_*.png"))
    return np.stack([iio.imread(path) for path in frames]).astype(float)


@pytest.mark.parametrize("kind, subjects, variations", [("slide", "Cube", 1), ("bounce", "Ball", 1), ("orbit", "", 2)])
def test_a_previs_scene_comes_back_as_takes_covering_the_shot(
    kind, subjects, variations, addon_zips, backend, tmp_path
):
    report = run_blender(
        "previs",
        {"zip": str(addon_zips["py311"]), "address": backend.address, "kind": kind, "variations": variations},
        tmp_path,
        timeout=600,
    )
    assert report["plan"] == {"frames": 25, "width": 320, "height": 192}
    takes = report["takes"]
    assert [t["state"] for t in takes] == ["imported"] * variations, [t["words"] for t in takes]
    assert report["subjects"] == [subjects] * variations
    strips = report["strips"]
    assert sorted((s["start"], s["duration"], s["elements"], s["channel"]) for s in strips) == [
        (1, 25, 25, channel) for channel in range(1, variations + 1)
    ]
    assert all(s["size"] == [320, 192] for s in strips)
    jobs = [manifest(backend, t["job_id"]) for t in takes]
    assert [job["mask_count"] for job in jobs] == [25 if subjects else 0] * variations
    frames = playblast(backend, takes[0]["job_id"])
    assert frames.shape[:3] == (25, 192, 320)
    # The shot moves: the playblast's first and last frames differ, and for the camera-only move
    # over the whole frame (the set itself slides across the picture), not just in a corner.
    change = np.abs(frames[-1] - frames[0]).max(axis=-1) > 10
    assert change.any()
    if kind == "orbit":
        assert change[:, :160].any() and change[:, 160:].any()
        # Two seeds of one shot: the backend measured the shot's motion once.
        assert len({t["seed"] for t in takes}) == 2
        assert [job["stats"].get("source_cache_hit") for job in jobs].count(True) == 1
