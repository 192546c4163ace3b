"""Takes in real Blender against a live backend: queued one after another, removed, re-imported."""

import time
from pathlib import Path

from tests.backend.conftest import TIMEOUT

from .conftest import run_blender


def hold_the_next_job_until_another_waits(backend, monkeypatch) -> None:
    """The backend's next job starts only once a second one is queued behind it: the second take
    then waits in the queue however fast the first would have run on this machine."""
    worker, store = backend.server.worker, backend.server.store
    run_job, held = worker.run_job, []

    def run_held(job):
        if not held:
            held.append(job.job_id)
            deadline = time.monotonic() + TIMEOUT
            while not store.queue and time.monotonic() < deadline:
                time.sleep(0.02)
        return run_job(job)

    monkeypatch.setattr(worker, "run_job", run_held)


def test_two_generates_queue_two_takes_that_land_on_free_channels(addon_zips, live_backend, tmp_path, monkeypatch):
    hold_the_next_job_until_another_waits(live_backend, monkeypatch)
    report = run_blender(
        "takes",
        {"zip": str(addon_zips["py311"]), "address": live_backend.address, "prompt": "a red ball on grass", "seed": 3},
        tmp_path,
    )
    assert report["generate"] == [["FINISHED"], ["FINISHED"]]
    assert "queued" in report["states_seen"]["take_002"]
    landed = report["landed"]
    assert [t["state"] for t in landed["takes"]] == ["imported", "imported"]
    strips = {s["name"]: s for s in landed["strips"]}
    assert {(s["start"], s["channel"], s["elements"]) for s in strips.values()} == {(1, 1, 9), (1, 2, 9)}
    # Each take in a folder of its own next to the .blend; the second said where it waited.
    first, second = landed["takes"]
    assert Path(first["folder"]).parent == Path(second["folder"]).parent == tmp_path / "flowmotion" / "shot" / "Scene"
    assert first["folder"] != second["folder"]
    assert "queued, position 1" in report["states_seen"]["take_002 words"]
    assert second["words"] == "landed: 9 frames from frame 1"

    assert report["remove"] == ["FINISHED"]
    assert [t["name"] for t in report["after_remove"]["takes"]] == ["take_002"]
    assert [s["name"] for s in report["after_remove"]["strips"]] == ["take_002"]
    assert report["first_folder_exists"] is False

    assert report["reimport_from_disk"] == ["FINISHED"]
    assert [(s["name"], s["elements"]) for s in report["after_reimport"]["strips"]] == [("take_002", 9)]
    assert report["after_reimport"]["strips"][0]["props"] == strips["take_002"]["props"]
    props = strips["take_002"]["props"]
    assert (props["flowmotion_prompt"], props["flowmotion_seed"]) == ("a red ball on grass", second["seed"])
    assert '"num_inference_steps": 4' in props["flowmotion_settings"]

    assert report["reimport_from_backend"] == ["FINISHED"]
    assert report["after_refetch"]["takes"][0]["state"] == "imported"
    assert [(s["name"], s["elements"]) for s in report["after_refetch"]["strips"]] == [("take_002", 9)]
    assert report["second_folder_frames"] == 9
