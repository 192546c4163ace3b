"""The Blender-made world of the embedded model: real Blender (bpy), a few tiny frames per shot."""

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from flowmotion import durable
from flowmotion.toy import blender_world, metrics

pytest.importorskip("bpy", reason="the Blender world renders with the bpy package")
pytestmark = pytest.mark.blender

WIDTH, HEIGHT, FRAMES = 64, 40, 5
OBJECT_SEED, CAMERA_SEED = 0, 2  # seeds whose kinds are "object" and "camera"


@pytest.fixture(scope="module")
def object_shot():
    return blender_world.render_shot(blender_world.shot_spec(OBJECT_SEED, FRAMES), WIDTH, HEIGHT)


@pytest.fixture(scope="module")
def camera_shot():
    return blender_world.render_shot(blender_world.shot_spec(CAMERA_SEED, FRAMES), WIDTH, HEIGHT)


def test_a_seed_fixes_its_shot(object_shot):
    again = blender_world.render_shot(blender_world.shot_spec(OBJECT_SEED, FRAMES), WIDTH, HEIGHT)
    assert object_shot.spec.caption == again.spec.caption
    for name in ("playblast", "scene", "mask", "track"):
        np.testing.assert_array_equal(getattr(object_shot, name), getattr(again, name), err_msg=name)
    other = blender_world.shot_spec(OBJECT_SEED + 3, FRAMES)
    assert other.kind == object_shot.spec.kind
    assert other.subject_positions != object_shot.spec.subject_positions


def test_the_subject_mask_follows_the_recorded_track(object_shot):
    shot = object_shot
    assert shot.spec.kind == "object" and shot.mask.any(axis=(1, 2)).all()
    travelled = np.linalg.norm(shot.track[-1] - shot.track[0])
    assert travelled > WIDTH / 4, "the subject should cross a good part of the frame"
    for mask, expected in zip(shot.mask, shot.track, strict=True):
        found = metrics.centroid(mask)
        assert found is not None and np.linalg.norm(found - expected) < WIDTH * 0.06


def test_the_scene_look_shows_the_subject_in_its_colour_where_the_mask_is(object_shot):
    shot = object_shot
    coloured = np.stack([metrics.color_mask(frame, shot.spec.color) for frame in shot.scene])
    assert (coloured & ~shot.mask).sum() <= 0.05 * coloured.sum(), "the subject's colour shows outside its mask"
    # a set piece may hide part of the subject (its mask is its whole silhouette, as the add-on's is)
    shown = (coloured & shot.mask).sum(axis=(1, 2)) / shot.mask.sum(axis=(1, 2))
    assert np.median(shown) > 0.6
    assert shot.spec.caption == f"a {shot.spec.color} {shot.spec.shape} on {shot.spec.background}"


def test_both_looks_share_their_geometry(object_shot):
    import bpy  # noqa: F401  (the scene is rebuilt, then its subject masked under each look)

    spec = object_shot.spec
    scene, hero, pieces, ground = blender_world.build_scene(spec, WIDTH, HEIGHT)
    masks = {}
    with tempfile.TemporaryDirectory() as folder:
        for look in blender_world.LOOKS:
            blender_world.set_look(scene, look, spec, hero, pieces, ground)
            masks[look] = blender_world.render_mask(scene, hero, FRAMES, Path(folder))
    np.testing.assert_array_equal(masks["playblast"], masks["scene"])
    np.testing.assert_array_equal(masks["playblast"], object_shot.mask)
    assert not np.array_equal(object_shot.playblast, object_shot.scene)


def test_a_camera_shot_has_no_subject_but_global_motion(camera_shot):
    shot = camera_shot
    assert shot.spec.kind == "camera" and shot.spec.camera_move is not None
    assert not shot.mask.any() and np.isnan(shot.track).all()
    motion = metrics.global_motion(shot.playblast)
    assert np.sqrt((motion**2).sum(axis=-1)).max(axis=1).min() > 0.2
    assert metrics.camera_agreement(shot.scene, shot.playblast) == 1.0
    assert metrics.camera_agreement(shot.scene[::-1], shot.playblast) == 0.0


def test_the_command_writes_shots_and_their_descriptions(tmp_path):
    assert (
        blender_world.main(
            ["--out", str(tmp_path), "--count", "2", "--seed", "7", "--width", "32", "--height", "24", "--frames", "3"]
        )
        == 0
    )
    shots = blender_world.load_shots(tmp_path)
    assert [entry["seed"] for entry, _ in shots] == [7, 8]
    assert [entry["kind"] for entry, _ in shots] == ["object+camera", "camera"]
    entry, arrays = shots[0]
    assert arrays["playblast"].shape == arrays["scene"].shape == (3, 24, 32, 3)
    assert arrays["mask"].shape == (3, 24, 32) and len(entry["track"]) == 3
    assert shots[1][0]["track"] is None
    assert json.loads((tmp_path / "shots.json").read_text())["width"] == 32
    assert not list(tmp_path.glob(durable.STAGING_PREFIX + "*"))
    clips = blender_world.clips_from_shots(tmp_path)
    assert [clip.caption for clip in clips[:2]] == [entry["playblast_caption"], entry["caption"]]
    np.testing.assert_array_equal(clips[1].frames, arrays["scene"])
    assert clips[1].mask is not None and clips[1].mask.shape == (3, 24, 32)


def test_bad_sizes_and_kinds_are_refused_by_name():
    with pytest.raises(blender_world.BlenderWorldError, match="too small"):
        blender_world.render_shot(blender_world.shot_spec(0, 3), 4, 4)
    with pytest.raises(blender_world.BlenderWorldError, match="unknown shot kind"):
        blender_world.shot_spec(0, 3, kind="zoom")


def test_without_blender_rendering_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "bpy", None)  # as if the bpy package were not installed
    with pytest.raises(blender_world.BlenderWorldError, match="pip install bpy"):
        blender_world.render_shot(blender_world.shot_spec(0, 3), 32, 32)
    assert blender_world.shot_spec(0, 3).caption  # drawing a shot needs no Blender


def test_global_motion_finds_a_known_shift_in_every_tile():
    rng = np.random.default_rng(1)
    texture = rng.random((60, 80))
    smooth = (texture + np.roll(texture, 1, 0) + np.roll(texture, 1, 1) + np.roll(texture, (1, 1), (0, 1))) / 4
    frames = np.stack([np.roll(smooth, (-2 * f, 3 * f), axis=(0, 1)) for f in range(3)])
    frames = np.repeat((frames * 255).astype(np.uint8)[..., None], 3, axis=3)
    np.testing.assert_allclose(metrics.global_motion(frames), np.broadcast_to([3.0, -2.0], (2, 4, 2)), atol=0.2)
    assert metrics.camera_agreement(frames, frames) == 1.0
    assert metrics.camera_agreement(frames[::-1], frames) == 0.0
    assert metrics.camera_agreement(np.repeat(frames[:1], 3, axis=0), frames) == 0.0  # a still take follows nothing
