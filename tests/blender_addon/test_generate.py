"""Generate against a live backend on loopback, in real Blender, with the tiny model."""

import socket
from pathlib import Path

import imageio.v3 as iio

from .conftest import run_blender


def test_generate_lands_a_strip_with_its_frames_and_properties(addon_zips, live_backend, tmp_path):
    blend = tmp_path / "shot.blend"
    report = run_blender(
        "generate",
        {
            "zip": str(addon_zips["py311"]),
            "address": live_backend.address,
            "blend": str(blend),
            "prompt": "a red ball on grass",
            "seed": 7,
        },
        tmp_path,
    )
    assert report["generate"] == ["FINISHED"] and report["render_settings_kept"]
    # Every frame of the shot at its render size: the backend gives the take back at this size.
    assert report["plan"] == {"frames": [1, 2, 3, 4, 5, 6, 7, 8, 9], "width": 72, "height": 40}
    assert report["settings_changed_mid_way"] == 0
    take = report["takes"][-1]
    assert take["state"] == "imported", take
    assert take["frame_count"] == 9
    folder = Path(take["folder"])
    assert folder == tmp_path / "flowmotion" / "shot" / "Scene" / f"{take['name']}-{take['job_id'][-8:]}"
    frames = sorted(folder.glob("frame_*.png"))
    assert len(frames) == 9 and iio.imread(frames[0]).shape == (40, 72, 3)
    strip = report["strips"][0]
    assert (strip["start"], strip["channel"], strip["duration"], strip["elements"]) == (1, 1, 9, 9)
    assert strip["size"] == [72, 40] and strip["name"] == take["name"]
    props = strip["props"]
    assert props["flowmotion_prompt"] == "a red ball on grass" and props["flowmotion_seed"] == take["seed"]
    assert props["flowmotion_job_id"] == take["job_id"] and '"guided_steps": 2' in props["flowmotion_settings"]
    assert props["flowmotion_subjects"] == "Cube"
    assert [p.name for p in folder.parent.glob(".*")] == []  # no staging folder left behind
    assert live_backend.server.store.get(take["job_id"]).mask_count == 9  # the moving cube's silhouettes went along


def test_cancel_mid_job(addon_zips, live_backend, tmp_path):
    report = run_blender(
        "generate",
        {
            "zip": str(addon_zips["py311"]),
            "address": live_backend.address,
            "mode": "cancel",
            "settings": {"num_inference_steps": 200},
        },
        tmp_path,
    )
    take = report["takes"][-1]
    assert take["state"] == "cancelled"
    assert report["strips"] == []


def test_save_close_reopen_reattaches_and_fetches(addon_zips, live_backend, tmp_path):
    blend = tmp_path / "shot.blend"
    first = run_blender(
        "generate",
        {
            "zip": str(addon_zips["py311"]),
            "address": live_backend.address,
            "blend": str(blend),
            "mode": "save_and_quit",
            "settings": {"num_inference_steps": 30},
        },
        tmp_path,
    )
    assert first["takes"][-1]["state"] in ("queued", "running") and first["strips"] == []
    second = run_blender(
        "reattach", {"zip": str(addon_zips["py311"]), "blend": str(blend), "address": live_backend.address}, tmp_path
    )
    assert second["state_on_open"] in ("queued", "running", "done")
    take = second["takes"][-1]
    assert take["state"] == "imported" and take["job_id"] == first["takes"][-1]["job_id"]
    assert second["strips"][0]["elements"] == 9


def test_a_file_saved_mid_playblast_reopens_with_the_take_not_sent(addon_zips, live_backend, tmp_path):
    blend = tmp_path / "shot.blend"
    first = run_blender(
        "generate",
        {
            "zip": str(addon_zips["py311"]),
            "address": live_backend.address,
            "blend": str(blend),
            "mode": "save_mid_playblast",
        },
        tmp_path,
    )
    assert first["takes"][-1]["state"] == "rendering"
    second = run_blender(
        "reattach", {"zip": str(addon_zips["py311"]), "blend": str(blend), "address": live_backend.address}, tmp_path
    )
    take = second["takes"][-1]
    assert take["state"] == "failed" and take["words"].startswith("not sent: the file was saved"), take
    assert live_backend.server.store.get(take["job_id"]) is None


def test_a_take_that_cannot_be_written_says_why_and_can_be_fetched_again(addon_zips, live_backend, tmp_path):
    report = run_blender(
        "generate",
        {"zip": str(addon_zips["py311"]), "address": live_backend.address, "mode": "blocked_folder"},
        tmp_path,
    )
    blocked = report["blocked"]
    assert blocked["state"] == "done" and blocked["words"].startswith("done, not imported: the frames could not be")
    assert blocked["reimport_poll"] is True and report["reimport"] == ["FINISHED"]
    take = report["takes"][-1]
    assert take["state"] == "imported" and report["strips"][0]["elements"] == 9


def test_unreachable_backend_reports_within_the_timeout(addon_zips, tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    report = run_blender(
        "generate",
        {"zip": str(addon_zips["py311"]), "address": f"tcp://127.0.0.1:{port}", "mode": "unreachable", "timeout": 1.0},
        tmp_path,
    )
    take = report["takes"][-1]
    assert "did not answer within 1 s" in take["message"]  # the connect timeout's own words
    assert "did not answer" in report["error"]
    # Nothing was rendered or sent, and the take says so.
    assert take["state"] == "failed" and take["words"].startswith("not delivered: the backend at"), take
    assert report["strips"] == []


def test_a_shot_without_camera_or_frames_cannot_be_sent(addon_zips, tmp_path):
    report = run_blender("problems", {"zip": str(addon_zips["py311"])}, tmp_path)
    # Takes are written next to the .blend: an unsaved file is asked to be saved first.
    assert report["unsaved_ready"] is False
    assert report["unsaved_problem"] == "save the .blend first: takes are written next to it"
    assert report["ready"] is True
    assert len(report["shortest_plan"]) == 1
    assert report["no_camera"].startswith("the scene has no camera") and not report["no_camera_poll"]
    assert report["takes"] == 0
