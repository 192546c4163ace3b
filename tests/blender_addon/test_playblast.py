"""The playblast in real Blender: model-legal frames, and the artist's render settings untouched."""

from .conftest import run_blender


def test_playblast_of_a_video_output_shot_and_a_failing_one_keep_the_render_settings(addon_zips, tmp_path):
    report = run_blender("playblast", {"zip": str(addon_zips["py311"])}, tmp_path)
    before = report["before"]
    assert (before["media"], before["format"], before["percentage"]) == ("VIDEO", "FFMPEG", 50)
    # Every one of the 12 shot frames, at the render size: 72x40 at 50% is 36x20.
    assert report["frames"] == [f"frame_{n:04d}.png" for n in range(1, 13)]
    assert report["sizes"] == [[36, 20]]
    assert report["after_success"] == before
    assert report["error"].startswith("Blender could not render playblast frame 7: "), report["error"]
    assert "camera" in report["error"]
    assert report["after_failure"] == before
    assert report["left_behind"] == []


def test_subject_masks_render_the_moving_objects_alone_and_put_everything_back(addon_zips, tmp_path):
    report = run_blender("subjects", {"zip": str(addon_zips["py311"])}, tmp_path)
    moving = report["moving"]
    assert moving["subjects"] == ["Cube"]  # not the static ground, nor a ball moving behind the camera
    assert moving["masks"] == [f"frame_{n:04d}.png" for n in range(1, 10)] and moving["frames"] == 9
    modes = {mode for mode, _ in moving["centres"]}
    centres = [x for _, x in moving["centres"]]
    assert modes == {"RGBA"} and None not in centres
    assert centres == sorted(centres) and centres[-1] - centres[0] > 20  # the cube crosses the frame left to right
    assert moving["ground_hidden"] is False and moving["settings_kept"]
    assert report["ticks"] == [[done, 18] for done in range(1, 19)]  # 9 frames, then 9 masks
    assert report["select"] == {"result": ["FINISHED"], "frame": 4, "selected": ["Cube"]}  # what Generate sends
    assert report["none"] == []
    assert report["no_collection"].startswith("Subjects is set to Collection but no collection is chosen")
    assert report["no_collection_problem"] == "choose the subject collection, or set Subjects to Moving Objects"
    assert report["collection"] == ["ground"]
    assert report["mask_error"].startswith("Blender could not render subject mask 5: "), report["mask_error"]
    assert report["after_failure"] == {"settings_kept": True, "ground_hidden": False}
