"""The playblast in real Blender: model-legal frames, and the artist's render settings untouched."""

from .conftest import run_blender


def test_playblast_of_a_video_output_shot_and_a_failing_one_keep_the_render_settings(addon_zips, tmp_path):
    report = run_blender("playblast", {"zip": str(addon_zips["py311"])}, tmp_path)
    before = report["before"]
    assert (before["media"], before["format"], before["percentage"]) == ("VIDEO", "FFMPEG", 50)
    # 12 shot frames become 13 (4k + 1); 72x40 at 50% is 36x20, which the model takes as 32x16.
    assert report["frames"] == [f"frame_{n:04d}.png" for n in range(1, 14)]
    assert report["sizes"] == [[32, 16]]
    assert report["after_success"] == before
    assert report["error"].startswith("Blender could not render playblast frame 7: "), report["error"]
    assert "camera" in report["error"]
    assert report["after_failure"] == before
    assert report["left_behind"] == []
