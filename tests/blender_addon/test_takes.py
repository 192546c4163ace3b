"""Takes in real Blender against a live backend: queued one after another, removed, re-imported."""

from pathlib import Path

from .conftest import run_blender


def test_two_generates_queue_two_takes_that_land_on_free_channels(addon_zips, live_backend, tmp_path):
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
