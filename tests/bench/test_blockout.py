"""The blockout benchmark's code path on two tiny held-out Blender shots and the embedded model,
rendered here or read from a folder of pre-rendered shots."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("bpy", reason="the benchmark's shots are rendered with the bpy package")
pytestmark = pytest.mark.blender
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import blockout  # noqa: E402

import flowmotion  # noqa: E402
from flowmotion.loading import EMBEDDED_MAX_AREA  # noqa: E402
from flowmotion.toy import blender_world, metrics  # noqa: E402

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
    carried = rows[blockout.ROUND_TRIP]  # the render through the model's VAE still follows the shot
    assert carried["ratio"] < 0.5 and 0 <= carried["camera"] <= 1 and 0 <= carried["text"] <= 1
    worst = np.hypot(64, 40) / 2
    for name in blockout.ROWS:
        assert 0 <= rows[name]["static"] <= worst and 0 <= rows[name]["text"] <= 1
        assert 0 <= rows[name]["camera"] <= 1
    assert rows["baseline: blob parked at the mean position"]["ratio"] == 1.0
    assert "| plain sampling (no guidance) |" in blockout.table(rows)


def test_benchmark_seeds_stay_clear_of_training_seeds():
    assert blockout.held_out_seeds(3)[0] == blender_world.BENCHMARK_SEED_START
    with pytest.raises(blockout.BlockoutError, match="for training"):
        blockout.held_out_seeds(3, first=blender_world.BENCHMARK_SEED_START - 1)


def test_the_benchmark_reads_pre_rendered_shots_and_prints_a_markdown_table(tmp_path, capsys, shots):
    blender_world.write_shots(tmp_path, [OBJECT_SEED, CAMERA_SEED], 64, 40, 5)
    read = blockout.shots_from_folder(tmp_path)
    assert [(s.seed, s.kind, s.prompt) for s in read] == [(s.seed, s.kind, s.prompt) for s in shots]
    assert np.array_equal(read[0].playblast, shots[0].playblast) and np.array_equal(read[0].mask, shots[0].mask)

    assert blockout.main(["--shots-dir", str(tmp_path), "--device", "cpu", "--steps", "2", "--guided-steps", "1"]) == 0
    printed = capsys.readouterr().out
    assert f"seeds {OBJECT_SEED}-{CAMERA_SEED}" in printed and "64x40, 5 frames" in printed
    lines = [line for line in printed.splitlines() if line.startswith("|")]
    assert lines[1].startswith("|---|")
    names = [line.split(" | ")[0].lstrip("| ") for line in lines[2:]]
    assert names[:2] == ["baseline: blob parked at the mean position", "baseline: blob parked at the frame centre"]
    assert set(blockout.ROWS) <= set(names)
    best = [name for name in names if name.startswith(blockout.BEST)]
    assert len(best) == 1 and best[0][len(blockout.BEST) :] in blockout.ROWS[1:]
    assert all(line.count("|") == lines[0].count("|") for line in lines)


def test_a_folder_with_a_training_seed_is_refused_before_the_model_loads(tmp_path, capsys, monkeypatch):
    training_seed = 3
    blender_world.write_shots(tmp_path, [training_seed], 32, 24, 2)
    monkeypatch.setattr(flowmotion, "load_pipeline", lambda *a, **k: pytest.fail("the model should not load"))
    with pytest.raises(blockout.BlockoutError, match="training seeds \\(3\\)"):
        blockout.shots_from_folder(tmp_path)
    assert blockout.main(["--shots-dir", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert "training seeds (3)" in error and str(blender_world.BENCHMARK_SEED_START) in error


def test_a_folder_without_shots_is_refused_with_the_command_that_writes_them(tmp_path, capsys):
    assert blockout.main(["--shots-dir", str(tmp_path)]) == 2
    assert "holds no shots.json" in capsys.readouterr().err
    blender_world.write_shots(tmp_path, [OBJECT_SEED], 32, 24, 2)
    (tmp_path / blender_world.clip_name(OBJECT_SEED)).unlink()  # the index outlived its shot
    assert blockout.main(["--shots-dir", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert "cannot be read" in error and "python -m flowmotion.toy.blender_world" in error


def test_chosen_modes_run_alone_and_a_trained_folder_at_its_own_area(shots, capsys, monkeypatch, tmp_path):
    pipe = flowmotion.load_pipeline("embedded", device="cpu")
    ran = []
    masks_mode = blockout.SUBJECT_MODES[0]
    rows = blockout.run(
        pipe, shots, 2, 1, EMBEDDED_MAX_AREA, on_mode=lambda n, r: ran.append(n), modes_run=[masks_mode]
    )
    assert ran == [masks_mode]
    assert set(rows) == {*blockout.baseline_rows(shots), blockout.REFERENCE, blockout.ROUND_TRIP, masks_mode}

    monkeypatch.setattr(flowmotion, "load_pipeline", lambda *a, **k: pipe)
    monkeypatch.setattr(blockout, "held_out_shots", lambda *a, **k: shots)
    argv = ["--steps", "2", "--guided-steps", "1", "--mode", blockout.PLAIN, "--mode", "FlowMotion"]
    assert blockout.main(argv) == 0
    printed = capsys.readouterr()
    names = [line.split(" | ")[0].lstrip("| ") for line in printed.out.splitlines() if line.startswith("| ")][1:]
    assert names[-2:] == [blockout.PLAIN, "FlowMotion"], "two modes, the baselines and references; no best of one"
    with pytest.raises(SystemExit):
        blockout.main(["--mode", "FlowMotion with extra words"])
    assert "invalid choice" in capsys.readouterr().err

    trained = tmp_path / "trained"  # a folder from flowmotion.toy.train works at its own area
    trained.mkdir()
    (trained / "TRAINING.json").write_text('{"width": 48, "height": 32}')
    assert blockout.main([*argv[:4], "--mode", blockout.PLAIN, "--model", str(trained)]) == 0
    assert "at max area 1536," in capsys.readouterr().out
    assert blockout.main([*argv[:4], "--mode", blockout.PLAIN, "--model", str(trained), "--max-area", "960"]) == 0
    assert "at max area 960," in capsys.readouterr().out


def test_several_takes_a_shot_average_takes_from_their_own_seeds(shots, capsys, monkeypatch):
    pipe = flowmotion.load_pipeline("embedded", device="cpu")
    config = blockout.modes(2, 1, 0.03)[blockout.SUBJECT_MODES[0]]

    def take_by_hand(shot, seed):
        out = flowmotion.transfer(
            pipe,
            shot.playblast,
            shot.prompt,
            config=config,
            max_area=EMBEDDED_MAX_AREA,
            generator=torch.Generator().manual_seed(seed),
            subject_mask=shot.mask if shot.has_subject else None,
        )
        return out.frames, blockout.score(out.frames, shot)

    averaged = blockout.evaluate(pipe, shots, config, True, EMBEDDED_MAX_AREA, takes_per_shot=2)
    by_hand = [[take_by_hand(shot, blockout.take_seed(i, take)) for take in range(2)] for i, shot in enumerate(shots)]
    for scores, takes in zip(averaged, by_hand, strict=True):
        assert not np.array_equal(takes[0][0], takes[1][0]), "each take samples from its own seed"
        for key in ("distance", "camera", "text"):
            values = [s[key] for _, s in takes if s.get(key) is not None]
            if values:
                assert scores[key] == pytest.approx(np.mean(values))
            else:
                assert scores.get(key) is None
    single = blockout.evaluate(pipe, shots[:1], config, True, EMBEDDED_MAX_AREA)[0]
    assert single["distance"] == pytest.approx(by_hand[0][0][1]["distance"]), (
        "one take a shot is the table's take, seed = shot index"
    )

    monkeypatch.setattr(flowmotion, "load_pipeline", lambda *a, **k: pipe)
    monkeypatch.setattr(blockout, "held_out_shots", lambda *a, **k: shots)
    argv = ["--steps", "2", "--guided-steps", "1", "--mode", blockout.PLAIN]
    assert blockout.main([*argv, "--takes-per-shot", "2"]) == 0
    assert "2 takes a shot," in capsys.readouterr().out
    with pytest.raises(SystemExit):
        blockout.main([*argv, "--takes-per-shot", "0"])
    assert "--takes-per-shot must be 1 or more, got 0" in capsys.readouterr().err


def test_frames_drawn_in_another_colour_are_told_apart_from_a_subject_drawn_elsewhere(shots):
    shot = shots[0]
    shown, _ = blockout.subject_track(shot)
    recoloured = shot.scene.copy()
    for index in shown[::2]:  # every other frame that shows the subject: in another colour
        recoloured[index][metrics.color_mask(recoloured[index], shot.color)] = (0, 0, 0)
    camera_shot = blockout.score(shots[1].scene, shots[1])
    scores = [blockout.score(recoloured, shot), camera_shot]
    assert scores[0]["missing"] == pytest.approx(len(shown[::2]) / len(shown))
    assert scores[0]["found"] < 2.0 < scores[0]["distance"]  # where its colour shows, on the subject
    row = blockout.summarise(shots, scores)
    assert row["missing"] == scores[0]["missing"] and row["shown_ratio"] < 0.2 < row["ratio"]
    table = blockout.table({"recoloured": row})
    assert "frames without the prompt's colour" in table and f"| {row['missing']:.3f} |" in table

    nowhere = recoloured.copy()
    for frame in nowhere:
        frame[metrics.color_mask(frame, shot.color)] = (0, 0, 0)
    blank = blockout.score(nowhere, shot)
    assert blank["missing"] == 1.0 and blank["found"] is None
    assert np.isnan(blockout.summarise(shots, [blank, camera_shot])["shown_ratio"])


def test_the_first_frame_is_scored_on_its_own_and_beside_the_parked_blobs(shots):
    shot = shots[0]
    shown, track = blockout.subject_track(shot)
    assert blockout.score(shot.scene, shot)["first"] < 2.0, "the shot's own render sits on its subject"
    lost = shot.scene.copy()
    lost[shown[0]][metrics.color_mask(lost[shown[0]], shot.color)] = (0, 0, 0)
    later_lost = shot.scene.copy()
    later_lost[shown[-1]][metrics.color_mask(later_lost[shown[-1]], shot.color)] = (0, 0, 0)
    first_lost, last_lost = blockout.score(lost, shot), blockout.score(later_lost, shot)
    assert first_lost["first"] == pytest.approx(metrics.half_diagonal(shot.scene))
    assert last_lost["first"] < 2.0 and last_lost["distance"] == pytest.approx(first_lost["distance"], rel=0.05)
    row = blockout.summarise(shots, [first_lost, blockout.score(shots[1].scene, shots[1])])
    assert row["first"] == first_lost["first"], "camera-only shots have no subject to score"
    parked = blockout.baseline_rows(shots)["baseline: blob parked at the mean position"]
    assert parked["first"] == pytest.approx(np.linalg.norm(track[0] - track.mean(axis=0)))
    assert "subject distance px, first frame" in blockout.table({"first lost": row})
    assert f"| {row['first']:.1f} |" in blockout.table({"first lost": row})
