"""The artist's loop in real Blender against a live backend: Generate again and again, on shots of
any length, in several files, and every take stays the shot's own."""

import io
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from .conftest import run_blender


def source(backend, job_id: str) -> np.ndarray:
    return np.stack([iio.imread(io.BytesIO(frame)) for frame in backend.server.store.source_frames(job_id)])


def masks(backend, job_id: str) -> np.ndarray:
    return np.stack([iio.imread(io.BytesIO(frame)) for frame in backend.server.store.subject_masks(job_id)])


def test_generate_after_a_take_landed_playblasts_the_3d_scene_with_a_new_seed(addon_zips, live_backend, tmp_path):
    report = run_blender("regenerate", {"zip": str(addon_zips["py311"]), "address": live_backend.address}, tmp_path)
    assert report["generate"] == [["FINISHED"]] * 3
    first, second, locked = report["takes"]
    assert [t["state"] for t in report["takes"]] == ["imported"] * 3, report["takes"]
    # The second playblast sees the 3D scene through the camera, not the first take in the edit,
    # whatever the edit, the compositor and the render region hold; and the settings come back.
    assert np.array_equal(source(live_backend, first["job_id"]), source(live_backend, second["job_id"]))
    coverage = (masks(live_backend, second["job_id"])[..., 3] > 127).mean()
    assert 0 < coverage < 0.5, coverage
    assert report["after"] == {"sequencer": True, "compositing": True, "border": True}
    assert report["settings_changed_mid_way"] == 0
    # A new seed per take by default, on the strip; the take differs. Locked, the seed is kept.
    assert first["seed"] != second["seed"]
    seeds = {s["name"]: s["props"]["flowmotion_seed"] for s in report["strips"]}
    assert seeds == {t["name"]: t["seed"] for t in report["takes"]}
    assert report["hashes"][0] != report["hashes"][1]
    assert report["locked_seed"] == second["seed"] == locked["seed"]
    assert report["hashes"][1] == report["hashes"][2]


def test_takes_of_two_files_in_one_folder_stay_apart(addon_zips, live_backend, tmp_path):
    report = run_blender("two_files", {"zip": str(addon_zips["py311"]), "address": live_backend.address}, tmp_path)
    a, b = report["runs"]
    assert a["name"] == b["name"] == "take_001" and a["state"] == b["state"] == "imported"
    assert Path(a["folder"]).parent == tmp_path / "flowmotion" / "a" / "Scene"
    assert Path(b["folder"]).parent == tmp_path / "flowmotion" / "b" / "Scene"
    assert report["a_after_b"] == a["hashes"] and len(a["hashes"]) == 9  # b's take replaced nothing of a's
    assert report["remove"] == ["FINISHED"] and report["a_exists"] is False
    assert report["b_after_remove"] == b["hashes"]  # removing a's take left b's frames alone


def test_a_take_covers_its_shot_frame_for_frame(addon_zips, live_backend, tmp_path):
    ranges = [[1, 30], [1, 27], [101, 112]]
    report = run_blender(
        "frame_ranges",
        {"zip": str(addon_zips["py311"]), "address": live_backend.address, "ranges": ranges},
        tmp_path,
        timeout=400,
    )
    strips = {s["name"]: s for s in report["strips"]}
    for (first, last), take in zip(ranges, report["takes"], strict=True):
        count = last - first + 1
        assert take["state"] == "imported" and take["frame_count"] == count, take
        strip = strips[take["name"]]
        assert (strip["start"], strip["duration"], strip["elements"]) == (first, count, count)
        job = live_backend.server.store.get(take["job_id"])
        # The cube moves over frames 1 to 9 only: later shots have no moving subject to send.
        assert job.frame_count == count and job.mask_count == (count if first == 1 else 0)
        assert len(list(Path(take["folder"]).glob("frame_*.png"))) == count


@pytest.fixture
def small_backend(tmp_path):
    from flowmotion.tiny import build_tiny_pipeline
    from protocol import Limits
    from tests.backend.conftest import Backend

    backend = Backend(
        build_tiny_pipeline(), tmp_path / "jobs", limits=Limits(max_width=64, max_height=32, max_frames=25)
    ).start()
    yield backend
    backend.stop()


def test_a_shot_beyond_the_backends_limits_is_checked_before_anything_renders(addon_zips, small_backend, tmp_path):
    report = run_blender("preflight", {"zip": str(addon_zips["py311"]), "address": small_backend.address}, tmp_path)
    assert report["full_hd"] == [1920, 1080]  # at the backend's default limit, never rounded past it
    refused = report["refused"]
    assert refused["state"] == "failed" and report["renders_when_refused"] == 0
    assert refused["words"].startswith("not sent: the shot has 30 frames and the backend takes at most 25"), refused
    assert "Long Shots" in refused["words"] and report["poll_once_known"] is False
    assert any("at most 25 per take" in text for _, text in report["panel_refused"])
    assert ["label", "Sends the first 25 of 30 frames at 57x32"] in report["panel_first"]
    take = report["takes"][-1]
    assert take["state"] == "imported", take
    strip = report["strips"][0]
    assert (strip["start"], strip["elements"], strip["size"]) == (1, 25, [57, 32])
    assert report["renders"] == 50  # 25 frames and their 25 masks, once


def test_the_playblast_renders_a_frame_at_a_time_and_cancels_cleanly(addon_zips, live_backend, tmp_path):
    report = run_blender("rendering", {"zip": str(addon_zips["py311"]), "address": live_backend.address}, tmp_path)
    states = [state for state, *_ in report["steps"]]
    assert "rendering" in states
    assert ["rendering", 0, 0, "finding the subjects"] in report["steps"]
    progress = [step for state, step, total, _ in report["steps"] if state == "rendering" and total]
    assert progress == sorted(progress) and len(set(progress)) >= 4  # one image per tick
    assert ["rendering", 2, 18, "playblast 2/18"] in report["steps"]
    assert report["between_images"] and report["settings_changed_mid_way"] == 0
    assert report["cancel"] == ["FINISHED"]
    take = report["takes"][-1]
    assert take["state"] == "cancelled" and "nothing was sent" in take["words"]
    assert live_backend.server.store.get(take["job_id"]) is None
    assert report["playblast_folders"] == []


def test_one_generate_gives_variations_on_free_channels(addon_zips, live_backend, tmp_path):
    report = run_blender("variations", {"zip": str(addon_zips["py311"]), "address": live_backend.address}, tmp_path)
    assert report["generate"] == [["FINISHED"]]
    takes = report["takes"]
    assert [t["state"] for t in takes] == ["imported"] * 3 and len({t["seed"] for t in takes}) == 3
    assert sorted((s["start"], s["channel"], s["elements"]) for s in report["strips"]) == [
        (1, 1, 9),
        (1, 2, 9),
        (1, 3, 9),
    ]
    jobs = [live_backend.server.store.get(t["job_id"]) for t in takes]
    assert len({b"".join(live_backend.server.store.source_frames(job.job_id)) for job in jobs}) == 1


def test_ten_generates_in_a_row_give_ten_distinct_takes(addon_zips, live_backend, tmp_path):
    report = run_blender(
        "ten_in_a_row", {"zip": str(addon_zips["py311"]), "address": live_backend.address}, tmp_path, timeout=400
    )
    assert report["generate"] == [["FINISHED"]] * 10 and report["landed_between"]
    takes = report["takes"]
    assert [t["state"] for t in takes] == ["imported"] * 10, [t["words"] for t in takes]
    assert len({t["name"] for t in takes}) == len({t["folder"] for t in takes}) == len({t["seed"] for t in takes}) == 10
    assert all(len(hashes) == 9 for hashes in report["hashes"].values())
    assert len({tuple(sorted(h.values())) for h in report["hashes"].values()}) == 10
    assert report["unchanged"]  # the takes that landed first kept their frames
    strips = report["strips"]
    assert sorted(s["channel"] for s in strips) == list(range(1, 11))
    assert {(s["start"], s["duration"]) for s in strips} == {(1, 9)}
    assert report["settings_changed_mid_way"] == 0


def test_take_actions_and_the_backends_state(addon_zips, live_backend, tmp_path):
    report = run_blender("take_actions", {"zip": str(addon_zips["py311"]), "address": live_backend.address}, tmp_path)
    shot = report["shot"]
    assert report["use"] == ["FINISHED"]
    assert shot == {
        "prompt": "a red ball on grass",
        "seed": shot["first_seed"],
        "lock": True,
        "guided_steps": 2,
        "first_seed": shot["first_seed"],
    }
    assert report["solo"] == ["FINISHED"] and sorted(s["mute"] for s in report["solo_strips"]) == [False, True]
    assert report["unsolo"] == ["FINISHED"] and [s["mute"] for s in report["unsolo_strips"]] == [False, False]
    assert report["open_poll"] is True
    labels = [text for kind, *rest in report["panel"] if kind == "label" for text in rest]
    assert "take_001: landed: 9 frames from frame 1" in labels
    prefs = [tuple(entry) for entry in report["prefs"]]
    assert ("operator", "flowmotion.connect") in prefs
    assert ("label", "embedded on cpu") in prefs
    assert ("label", "Takes up to 121 frames at 1920x1080") in prefs


def test_a_backend_off_this_machine_waits_for_online_access(addon_zips, tmp_path):
    report = run_blender("online_access", {"zip": str(addon_zips["py311"]), "address": "tcp://127.0.0.1:1"}, tmp_path)
    assert report["loopback"] == [True, True, True, False, False]
    assert "Allow Online Access" in report["generate"] and report["connected"] is False
    assert "Allow Online Access" in report["status"] and report["takes"] == []
