"""The promise of the job store, end to end: the artist saves and closes Blender mid-job, the
backend is stopped and started again, and reopening the .blend still brings the take home."""

import pytest

from .conftest import BackendProcess, run_blender

# Real Blender and a backend process: minutes, not seconds.
pytestmark = [pytest.mark.blender, pytest.mark.slow]


@pytest.fixture
def backend(tiny_model, tmp_path):
    process = BackendProcess(tiny_model, tmp_path / "jobs", tmp_path / "backend.log").start()
    yield process
    process.kill()


def test_a_take_survives_closing_blender_and_restarting_the_backend(addon_zips, backend, tmp_path):
    blend = tmp_path / "shot.blend"
    first = run_blender(
        "generate",
        {
            "zip": str(addon_zips["py311"]),
            "address": backend.address,
            "blend": str(blend),
            "mode": "save_and_quit",
            "settings": {"num_inference_steps": 40},
        },
        tmp_path,
    )
    sent = first["takes"][-1]
    assert sent["state"] in ("queued", "running") and first["strips"] == []

    assert backend.stop() == 0
    log = backend.log.read_text()
    assert "resume at the next start" in log
    backend.start()
    assert "1 queued from before" in backend.log.read_text()

    second = run_blender(
        "reattach", {"zip": str(addon_zips["py311"]), "blend": str(blend), "address": backend.address}, tmp_path
    )
    take = second["takes"][-1]
    assert take["state"] == "imported" and take["job_id"] == sent["job_id"], take
    strip = second["strips"][0]
    assert (strip["start"], strip["elements"], strip["size"]) == (1, 9, [72, 40])
    assert strip["props"]["flowmotion_job_id"] == sent["job_id"]
    folder = tmp_path / "flowmotion" / "shot" / "Scene" / f"{take['name']}-{sent['job_id'][-8:]}"
    assert len(list(folder.glob("frame_*.png"))) == 9
