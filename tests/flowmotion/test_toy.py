"""The procedural world and the quality metrics, checked on clips whose truth is known."""

import numpy as np
import pytest

from flowmotion.toy import metrics
from flowmotion.toy.data import (
    COLORS,
    FRAMES,
    HELD_OUT_PATHS,
    HELD_OUT_SHAPES,
    SIZE,
    TRAIN_SHAPES,
    make_clip,
    redraw,
    training_clips,
    vocabulary,
)


def test_clips_are_reproducible_and_captioned():
    first, again = training_clips(6, seed=3), training_clips(6, seed=3)
    assert all(np.array_equal(a.frames, b.frames) and a.caption == b.caption for a, b in zip(first, again, strict=True))
    assert first[0].frames.shape == (FRAMES, SIZE, SIZE, 3) and first[0].track.shape == (FRAMES, 2)
    words = set(vocabulary())
    assert all(set(c.caption.split()) <= words for c in training_clips(40, seed=1))
    playblast = make_clip(np.random.default_rng(0), background="playblast")
    assert playblast.caption.startswith("a playblast of a grey")


def test_the_classifier_reads_clips_it_did_not_draw():
    rng = np.random.default_rng(11)
    right = total = 0
    for _ in range(60):
        clip = make_clip(rng, playblast_share=0.0, paths=HELD_OUT_PATHS)
        reading = metrics.read_take(clip.frames)
        right += (reading.color == clip.color) + (reading.shape == clip.shape) + (reading.background == clip.background)
        total += 3
    assert right / total >= 0.9


def test_motion_fidelity_is_perfect_on_the_source_and_low_on_another_path():
    rng = np.random.default_rng(5)
    clip = make_clip(rng, playblast_share=0.0, color="red", background="grass", paths=("circle",))
    share, error = metrics.motion_fidelity(clip.frames, "red", clip.track)
    assert share == 1.0 and error < 1.5
    other = make_clip(rng, playblast_share=0.0, color="red", background="grass", paths=("zigzag",))
    share, error = metrics.motion_fidelity(other.frames, "red", clip.track)
    assert share < 0.5 and error > 5


def test_a_missing_object_counts_as_the_worst_error():
    blank = np.zeros((3, SIZE, SIZE, 3), np.uint8)
    errors = metrics.track_errors(blank, "red", np.full((3, 2), 16.0))
    assert np.allclose(errors, np.hypot(SIZE, SIZE) / 2)
    assert metrics.read_take(blank).color is None


def test_temporal_consistency():
    still = np.full((5, 8, 8, 3), 100, np.uint8)
    assert metrics.temporal_consistency(still) == 1.0
    flicker = still.copy()
    flicker[::2] = 0
    assert metrics.temporal_consistency(flicker) < 0.7


def test_held_out_shapes_and_paths_are_not_in_training():
    assert not set(HELD_OUT_SHAPES) & set(TRAIN_SHAPES)
    with pytest.raises(ValueError):
        make_clip(np.random.default_rng(0), shape="hexagon")


def test_every_path_draw_ends_far_from_its_start():
    """Straight paths span at least 45% of the frame, and drawing them always finishes, whatever the seed."""
    from flowmotion.toy.data import path

    for seed in range(3000):
        track = path("straight", np.random.default_rng(seed))
        assert np.linalg.norm(track[-1] - track[0]) >= SIZE * 0.45


def test_a_clips_mask_marks_exactly_the_objects_pixels():
    clip = make_clip(np.random.default_rng(2), playblast_share=0.0, color="blue", background="sand")
    assert clip.mask.shape == clip.frames.shape[:3] and clip.mask.any()
    blue = np.all(clip.frames == np.array(COLORS["blue"], np.uint8), axis=-1)
    assert np.array_equal(blue, clip.mask)


def test_a_redrawn_clip_keeps_the_track_in_its_new_look():

    source = make_clip(np.random.default_rng(4), background="playblast", paths=("straight", "curve"))
    again = redraw(source, "purple", "cube", "snow")
    assert np.array_equal(again.track, source.track) and again.caption == "a purple cube on snow"
    assert metrics.motion_fidelity(again.frames, "purple", source.track)[0] == 1.0
    assert metrics.read_take(again.frames) == metrics.Reading("purple", "cube", "snow")


def test_silhouette_following_reads_a_recoloured_object_on_its_track():
    rng = np.random.default_rng(3)
    clip = make_clip(rng, background="playblast", shapes=("ball",), paths=("straight",))
    retake = redraw(clip, "yellow", "cube", "sand")
    share, error = metrics.silhouette_following(retake.frames, clip.mask, tolerance=2.0)
    assert share == 1.0 and error < 2.0
    shifted = np.roll(retake.frames, 10, axis=2)  # the same take, 10 px to the right
    share, error = metrics.silhouette_following(shifted, clip.mask, tolerance=2.0)
    assert share < 0.5 and 8.0 < error
    with pytest.raises(ValueError, match="no subject"):
        metrics.silhouette_following(retake.frames, np.zeros_like(clip.mask), tolerance=2.0)


def test_subject_following_beats_the_parked_blobs_only_when_the_take_follows():
    rng = np.random.default_rng(3)
    clip = make_clip(rng, background="playblast", shapes=("ball",), paths=("straight",))
    retake = redraw(clip, "yellow", "cube", "sand")
    for color in ("yellow", None):  # found by the prompt's colour, or by standing out
        on_track = metrics.subject_following(retake.frames, clip.mask, color)
        assert on_track.take < 1.5 and on_track.ratio < 0.2 and len(on_track.per_frame) == len(clip.frames)
    _, track = metrics.subject_track(clip.mask)
    height, width = clip.frames.shape[1:3]
    expected = metrics.parked_baselines(track, width, height)
    assert on_track.parked == expected["mean position"] and on_track.centre == expected["frame centre"]
    assert on_track.better_baseline == min(expected.values()) > 0

    still = np.repeat(retake.frames[len(clip.frames) // 2][None], len(clip.frames), axis=0)  # a take that stays put
    assert metrics.subject_following(still, clip.mask, "yellow").ratio > 0.8
    nothing = metrics.subject_following(retake.frames, clip.mask, "red")  # no red subject in any frame
    assert np.allclose(nothing.per_frame, np.hypot(width, height) / 2)
    assert nothing.missing == 1.0 and nothing.where_found is None
    assert on_track.missing == 0.0 and on_track.where_found == pytest.approx(on_track.take)
    recoloured = metrics.as_uint8(retake.frames).copy()
    for frame in recoloured[::2]:  # every other frame's subject drawn blue
        frame[metrics.color_mask(frame, "yellow")] = COLORS["blue"]
    half = metrics.subject_following(recoloured, clip.mask, "yellow")
    shown, _ = metrics.subject_track(clip.mask)
    assert half.missing == pytest.approx(np.mean(shown % 2 == 0))
    assert half.where_found < 1.5 < half.take  # where the colour shows, the subject is on track
    with pytest.raises(ValueError, match="no subject"):
        metrics.subject_following(retake.frames, np.zeros_like(clip.mask), "yellow")


def test_clips_draw_at_a_wide_working_area_with_the_same_shapes_and_paths():
    wide = training_clips(12, 5, FRAMES, 80, 48)
    assert all(c.frames.shape == (FRAMES, 48, 80, 3) and c.mask.shape == (FRAMES, 48, 80) for c in wide)
    # lengths scale with the shorter side: a subject covers about the same share of the frame's height
    square_height = np.mean([c.mask.sum(axis=(1, 2)).max() ** 0.5 / SIZE for c in training_clips(40, 6)])
    wide_height = np.mean([c.mask.sum(axis=(1, 2)).max() ** 0.5 / 48 for c in training_clips(40, 6, FRAMES, 80, 48)])
    assert abs(wide_height - square_height) < 0.02
    xs = np.concatenate([c.track[:, 0] for c in wide])
    assert xs.max() > 48, "subjects use the whole width, not a square corner of it"
    square = training_clips(3, 5, FRAMES, SIZE, SIZE)
    assert all(np.array_equal(a.frames, b.frames) for a, b in zip(square, training_clips(3, 5), strict=True))
