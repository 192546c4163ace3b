"""The blockout benchmark's code path on two tiny held-out Blender shots and the embedded model."""

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("bpy", reason="the benchmark's shots are rendered with the bpy package")
pytestmark = pytest.mark.blender
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import blockout  # noqa: E402

import flowmotion  # noqa: E402
from flowmotion.loading import EMBEDDED_MAX_AREA  # noqa: E402
from flowmotion.toy import blender_world  # noqa: E402

OBJECT_SEED = blender_world.BENCHMARK_SEED_START + 11  # kinds follow the seed: this one is "object"
CAMERA_SEED = blender_world.BENCHMARK_SEED_START + 1  # and this one "camera"


@pytest.fixture(scope="module")
def shots():
    return blockout.held_out_shots([OBJECT_SEED, CAMERA_SEED], 64, 40, 5)


def test_a_parked_blob_at_the_frame_centre_is_the_worse_baseline_for_an_off_centre_subject(shots):
    shot = shots[0]
    assert shot.kind == "object" and shot.has_subject
    _, track = blockout.subject_track(shot)
    assert np.linalg.norm(track.mean(axis=0) - np.array([32, 20])) > 3, "the subject should sit off-centre"
    baselines = blockout.baseline_distances(shot)
    assert baselines["frame centre"] > baselines["mean position"] > 0


def test_the_benchmark_scores_every_row_and_its_reference_follows(shots):
    pipe = flowmotion.load_pipeline("embedded", device="cpu")
    rows = blockout.run(pipe, shots, steps=2, guided=1, max_area=EMBEDDED_MAX_AREA)
    assert set(blockout.ROWS) <= set(rows)
    reference = rows[blockout.REFERENCE]
    assert reference["ratio"] < 0.2 and reference["camera"] == 1.0 and reference["text"] == 1.0
    worst = np.hypot(64, 40) / 2
    for name in blockout.ROWS:
        assert 0 <= rows[name]["static"] <= worst and 0 <= rows[name]["text"] <= 1
        assert 0 <= rows[name]["camera"] <= 1
    assert rows["baseline: blob parked at the mean position"]["ratio"] == 1.0
    assert "| plain sampling (no guidance) |" in blockout.table(rows)


def test_benchmark_seeds_stay_clear_of_training_seeds():
    assert blockout.held_out_seeds(3)[0] == blender_world.BENCHMARK_SEED_START
    with pytest.raises(ValueError, match="for training"):
        blockout.held_out_seeds(3, first=blender_world.BENCHMARK_SEED_START - 1)
