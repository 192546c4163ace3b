"""Training the embedded model on Blender shots: the data mix, its caption-keeping augmentation, the
shots' size check, and a tiny end-to-end run whose folder loads and transfers."""

import copy
import json

import numpy as np
import pytest
import torch

from flowmotion.toy import train
from flowmotion.toy.data import FRAMES, training_clips

WIDTH, HEIGHT = 80, 48


def write_shots_folder(folder, clips, width=WIDTH, height=HEIGHT):
    """A folder in write_shots' format (one .npz per shot and shots.json), here from procedural clips."""
    folder.mkdir(parents=True, exist_ok=True)
    shots = []
    for i, clip in enumerate(clips):
        np.savez(
            folder / f"shot_{i:08d}.npz", playblast=clip.frames, scene=clip.frames, mask=clip.mask, track=clip.track
        )
        shots.append(
            {
                "file": f"shot_{i:08d}.npz",
                "color": clip.color if clip.color != "grey" else "red",
                "shape": clip.shape,
                "background": "grass",
            }
        )
    (folder / "shots.json").write_text(json.dumps({"width": width, "height": height, "shots": shots}))
    return folder


@pytest.fixture(scope="module")
def bank():
    clips = training_clips(8, 1, FRAMES, WIDTH, HEIGHT)
    return train.build_bank(clips[:4], 4, 0, WIDTH, HEIGHT, torch.device("cpu"))


def centroid_x(mask: torch.Tensor) -> np.ndarray:
    columns = torch.arange(mask.shape[-1]).float() + 0.5
    return ((mask.float() * columns).sum(dim=(-2, -1)) / mask.float().sum(dim=(-2, -1))).numpy()


def test_a_flip_carries_the_mask_and_track_with_the_frames(bank):
    frames, masks, tracks = bank.frames[:4], bank.masks[:4], bank.tracks[:4]
    yes, no = torch.ones(4, dtype=torch.bool), torch.zeros(4, dtype=torch.bool)
    video, mask, track = train.augmented(frames, masks, tracks, yes, no)
    assert torch.equal(video, frames.flip(3)) and torch.equal(mask, masks.flip(3))
    np.testing.assert_allclose(track[..., 0].numpy(), WIDTH - tracks[..., 0].numpy())
    np.testing.assert_allclose(track[..., 1].numpy(), tracks[..., 1].numpy())
    # The flipped track still marks the flipped subject, where the subject is whole in view.
    inside = ((tracks[..., 0] > 12) & (tracks[..., 0] < WIDTH - 12)).numpy()
    assert inside.sum() > 20
    np.testing.assert_allclose(centroid_x(mask)[inside], track[..., 0].numpy()[inside], atol=1.0)
    assert not np.allclose(centroid_x(masks)[inside], centroid_x(mask)[inside], atol=1.0)


def test_time_reversal_plays_clip_mask_and_track_backwards(bank):
    frames, masks, tracks = bank.frames[:2], bank.masks[:2], bank.tracks[:2]
    yes, no = torch.ones(2, dtype=torch.bool), torch.zeros(2, dtype=torch.bool)
    video, mask, track = train.augmented(frames, masks, tracks, no, yes)
    for t in range(FRAMES):
        assert torch.equal(video[:, t], frames[:, FRAMES - 1 - t]) and torch.equal(mask[:, t], masks[:, FRAMES - 1 - t])
        assert torch.equal(track[:, t], tracks[:, FRAMES - 1 - t])


def test_a_seed_fixes_the_batches_and_the_mix_favours_the_shots(bank):
    first = bank.sample(6, 9, torch.Generator().manual_seed(3))
    again = bank.sample(6, 9, torch.Generator().manual_seed(3))
    other = bank.sample(6, 9, torch.Generator().manual_seed(4))
    assert first[0].shape == (6, 3, 9, HEIGHT, WIDTH) and first[1].shape == (6, 9, HEIGHT, WIDTH)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[0], other[0])
    picks = bank.pick(4000, torch.Generator().manual_seed(0))
    assert abs((picks < bank.shot_clips).float().mean().item() - train.SHOT_SHARE) < 0.03
    assert set(picks.tolist()) == set(range(len(bank.captions)))


def test_shots_of_another_size_are_refused_with_the_sizes_named(tmp_path):
    folder = write_shots_folder(tmp_path / "shots", training_clips(2, 0, FRAMES, 64, 40), 64, 40)
    with pytest.raises(SystemExit, match="64x40.*80x48"):
        train.shot_clips(folder, WIDTH, HEIGHT)
    with pytest.raises(SystemExit, match="no shots.json"):
        train.shot_clips(tmp_path, WIDTH, HEIGHT)


def test_a_packed_set_of_shots_trains_as_its_folder_does_and_a_damaged_one_is_refused(tmp_path):
    from flowmotion.toy import blender_world

    folder = write_shots_folder(tmp_path / "shots", training_clips(3, 4, FRAMES, WIDTH, HEIGHT))
    assert blender_world.main(["--pack", str(folder)]) == 0
    archive = tmp_path / "shots.tar.xz"
    assert archive.is_file() and not list(tmp_path.glob(".staging-*"))
    unpacked, packed = train.shot_clips(folder, WIDTH, HEIGHT), train.shot_clips(archive, WIDTH, HEIGHT)
    assert [c.caption for c in packed] == [c.caption for c in unpacked] and len(packed) == 6
    for a, b in zip(packed, unpacked, strict=True):
        assert np.array_equal(a.frames, b.frames) and np.array_equal(a.mask, b.mask)
        assert np.array_equal(a.track, b.track, equal_nan=True)

    blender_world.pack_shots(folder, archive)  # packed again over the first: the same shots
    assert len(train.shot_clips(archive, WIDTH, HEIGHT)) == 6
    with pytest.raises(SystemExit, match="80x48.*64x40"):  # the size check reads the archive too
        train.shot_clips(archive, 64, 40)
    damaged = tmp_path / "damaged.tar.xz"
    damaged.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(SystemExit, match="damaged.tar.xz cannot be read"):
        train.shot_clips(damaged, WIDTH, HEIGHT)


def test_packing_names_what_it_needs(tmp_path, capsys):
    from flowmotion.toy import blender_world

    for argv, expected in (
        (["--pack", str(tmp_path)], "no shots.json there"),
        ([], "one of the two"),
        (["--pack", str(tmp_path), "--out", str(tmp_path / "o")], "one of the two"),
    ):
        with pytest.raises(SystemExit):
            blender_world.main(argv)
        assert expected in capsys.readouterr().err
    assert not list(tmp_path.iterdir())

    folder = write_shots_folder(tmp_path / "shots", training_clips(2, 4, FRAMES, WIDTH, HEIGHT))
    (folder / "shot_00000001.npz").unlink()  # the index outlived a shot
    assert blender_world.main(["--pack", str(folder)]) == 2
    error = capsys.readouterr().err
    assert "shots cannot be packed" in error and "shot_00000001.npz" in error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shots"], "no archive, whole or half"


@pytest.mark.slow
def test_a_tiny_run_on_blender_shots_saves_a_model_that_loads_and_transfers(tmp_path):
    pytest.importorskip("bpy", reason="the shots are rendered by Blender")
    import flowmotion
    from flowmotion.loading import max_area_for
    from flowmotion.model import model_for
    from flowmotion.toy.blender_world import clips_from_shots, write_shots

    shots = tmp_path / "shots"
    write_shots(shots, [0, 2], WIDTH, HEIGHT, FRAMES)  # an object shot and a camera shot
    out = tmp_path / "embedded"
    train.main(
        [
            "--out",
            str(out),
            "--shots",
            str(shots),
            "--device",
            "cpu",
            "--procedural",
            "2",
            "--vae-frame-steps",
            "1",
            "--vae-clip-steps",
            "1",
            "--decoder-steps",
            "1",
            "--steps",
            "2",
            "--vae-frame-batch",
            "2",
            "--vae-clip-batch",
            "1",
            "--decoder-batch",
            "1",
            "--batch",
            "2",
        ]
    )

    report = json.loads((out / "TRAINING.json").read_text())
    assert (report["width"], report["height"]) == (WIDTH, HEIGHT)
    assert report["mix"]["shot_clips"] == 4 and report["mix"]["procedural_clips"] == 2
    assert report["transformer"]["steps_done"] == 2 and not report["cut_short"]
    assert report["framewise_vae"] is False and report["vae"]["frames_per_latent_frame"] == 2
    assert max_area_for(str(out)) == WIDTH * HEIGHT

    pipe = flowmotion.load_pipeline(str(out), device="cpu")
    clip = clips_from_shots(shots)[0]
    config = flowmotion.FlowMotionConfig(num_inference_steps=2, guided_steps=1, optimization_steps=1)
    take = flowmotion.transfer(pipe, clip.frames, clip.caption, config=config, max_area=max_area_for(str(out)))
    assert take.frames.shape == (FRAMES, HEIGHT, WIDTH, 3)
    assert np.isfinite(take.frames).all()

    # A decoder-only fine-tune of that folder: the encoder, the latents' statistics and the transformer
    # stay as they were, so nothing is encoded; only the decoder's weights move. Twice, the second on the first.
    from safetensors.torch import load_file

    before = out
    for name in ("decoder_tuned", "decoder_tuned_again"):
        tuned = tmp_path / name
        train.main(
            ["--out", str(tuned), "--shots", str(shots), "--device", "cpu", "--init-from", str(before)]
            + ["--procedural", "2", "--vae-frame-steps", "0", "--vae-clip-steps", "0", "--decoder-steps", "2"]
            + ["--decoder-batch", "1", "--steps", "0"]
        )
        tuned_report = json.loads((tuned / "TRAINING.json").read_text())
        assert tuned_report["latents"]["clips"] == 0 and tuned_report["decoder"]["steps_done"] == 2
        for part in ("transformer", "vae"):
            old_weights = load_file(before / part / "diffusion_pytorch_model.safetensors")
            new_weights = load_file(tuned / part / "diffusion_pytorch_model.safetensors")
            moved = {k for k in old_weights if not torch.equal(old_weights[k], new_weights[k])}
            if part == "transformer":
                assert not moved
            else:
                assert moved and all(k.startswith(train.DECODER_PREFIXES) for k in moved)
        old_config = json.loads((before / "vae" / "config.json").read_text())
        new_config = json.loads((tuned / "vae" / "config.json").read_text())
        assert (new_config["latents_mean"], new_config["latents_std"]) == (
            old_config["latents_mean"],
            old_config["latents_std"],
        )
        before = tuned
    pipe = flowmotion.load_pipeline(str(before), device="cpu")
    take = flowmotion.transfer(pipe, clip.frames, clip.caption, config=config, max_area=max_area_for(str(before)))
    assert take.frames.shape == (FRAMES, HEIGHT, WIDTH, 3) and np.isfinite(take.frames).all()

    # A fine-tune of that folder with a frame-wise VAE: one latent frame a frame, recorded, and it transfers.
    framewise = tmp_path / "framewise"
    train.main(
        ["--out", str(framewise), "--shots", str(shots), "--device", "cpu", "--init-from", str(out), "--framewise-vae"]
        + ["--procedural", "2", "--vae-frame-steps", "0", "--vae-clip-steps", "0", "--decoder-steps", "0"]
        + ["--steps", "1", "--batch", "2", "--latent-cache", str(tmp_path / "latents")]
    )
    framewise_report = json.loads((framewise / "TRAINING.json").read_text())
    assert framewise_report["framewise_vae"] is True and framewise_report["vae"]["frames_per_latent_frame"] == 1
    assert framewise_report["latents"]["clips"] == 24 and framewise_report["latents"]["clips_read_from_cache"] == 0
    assert len(list((tmp_path / "latents").glob("*/*.pt"))) == 6, "each clip's latents kept for the next run"
    pipe = flowmotion.load_pipeline(str(framewise), device="cpu")
    assert pipe.vae_scale_factor_temporal == 1
    take = flowmotion.transfer(pipe, clip.frames, clip.caption, config=config, max_area=WIDTH * HEIGHT)
    assert take.frames.shape == (FRAMES, HEIGHT, WIDTH, 3) and np.isfinite(take.frames).all()
    assert model_for(pipe).latent_shape(FRAMES, HEIGHT, WIDTH)[2] == FRAMES


@torch.no_grad()
def test_a_framewise_vae_carries_each_frame_alone_as_its_source_carries_a_first_frame():
    torch.manual_seed(0)
    vae = train.build_vae().eval()
    for parameter in vae.parameters():  # weights off their initialisation, so that every kernel tap matters
        parameter.add_(0.05 * torch.randn_like(parameter))
    framewise = train.framewise_vae(vae).eval()
    assert framewise.config.scale_factor_temporal == 1 and not any(framewise.config.temperal_downsample)
    clip = torch.rand(1, 3, 5, 16, 24) * 2 - 1

    latent = framewise.encode(clip).latent_dist.mean
    assert latent.shape[2] == 5, "no time compression"
    for t in range(5):
        alone = framewise.encode(clip[:, :, t : t + 1]).latent_dist.mean
        torch.testing.assert_close(latent[:, :, t : t + 1], alone, atol=1e-5, rtol=1e-4)
    source_first = vae.encode(clip[:, :, :1]).latent_dist.mean
    torch.testing.assert_close(latent[:, :, :1], source_first, atol=1e-5, rtol=1e-4)

    video = framewise.decode(latent).sample
    assert video.shape == clip.shape
    for t in (0, 3):
        alone = vae.decode(latent[:, :, t : t + 1]).sample  # the source decodes one latent frame to one frame
        torch.testing.assert_close(video[:, :, t : t + 1], alone, atol=1e-5, rtol=1e-4)
    # The source VAE, for contrast, halves time and mixes neighbouring frames.
    assert vae.encode(clip).latent_dist.mean.shape[2] == 3
    # A folder that is frame-wise already stays as it is when the flag comes again.
    again = train.framewise_vae(framewise).eval()
    torch.testing.assert_close(again.encode(clip).latent_dist.mean, latent, atol=1e-6, rtol=1e-5)


def test_the_time_limit_stops_a_stage_early_and_says_so():
    clock = train.Clock(max_minutes=1.0)
    clock.started -= 60 * train.STAGE_SHARES["vae"] * 0.999  # the VAE's share is all but spent
    assert clock.deadline("vae") < clock.deadline("decoder") < clock.deadline("transformer")
    stage = train.Stage("vae", 10**9, "weighted L1", 10, clock.deadline("vae"))
    for step in stage:
        stage.add(step, torch.tensor(0.5))
    summary = stage.summary()
    assert 0 < summary["steps_done"] < 10**9 and summary["steps"] == 10**9 and summary["loss"] == 0.5
    assert list(train.Stage("decoder", 5, "L1", 10, clock.deadline("decoder"))) == list(range(5))


@torch.no_grad()
def test_the_latent_cache_gives_what_encoding_gives_and_encodes_only_what_changed(bank, tmp_path, capsys):
    keep = [0, 1, 4, 5]  # two shots and two procedural clips, short and small: encoding is the cost here
    window = (keep, slice(0, 3), slice(8, 24), slice(16, 40))
    bank = train.ClipBank(bank.frames[window].clone(), bank.masks[window], bank.tracks[keep, :3], bank.captions[:4], 2)
    torch.manual_seed(0)
    vae = train.build_vae().eval()
    for parameter in vae.parameters():
        parameter.add_(0.05 * torch.randn_like(parameter))
    plain, cached = train.encode_bank(vae, bank, batch=3)
    assert cached == 0 and plain.shape[0] == 16

    cache = train.LatentCache(tmp_path / "latents", vae)
    first, cached = train.encode_bank(vae, bank, batch=3, cache=cache)
    assert cached == 0 and len(list(cache.folder.glob("*.pt"))) == 4
    torch.testing.assert_close(first, plain, atol=1e-5, rtol=1e-4)
    again, cached = train.encode_bank(vae, bank, batch=3, cache=train.LatentCache(tmp_path / "latents", vae))
    assert cached == 4 and torch.equal(again, first), "a second run reads every clip back as it was"

    # One clip changed, one file damaged and one holding something else: those three are encoded again.
    frames = bank.frames.clone()
    frames[2] = 255 - frames[2]
    changed = train.ClipBank(frames, bank.masks, bank.tracks, bank.captions, bank.shot_clips)
    cache.path(bank.frames[3]).write_bytes(b"not a tensor")
    torch.save({"not": "a tensor"}, cache.path(bank.frames[1]))  # readable, but not latents
    mixed, cached = train.encode_bank(vae, changed, batch=3, cache=cache)
    assert cached == 1 and capsys.readouterr().out.count("cannot be read") == 2
    torch.testing.assert_close(mixed[:4], first[:4], atol=0, rtol=0)
    torch.testing.assert_close(mixed[4:8], first[4:8], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(mixed[12:], first[12:], atol=1e-5, rtol=1e-4)
    assert not torch.allclose(mixed[8:12], first[8:12], atol=1e-3), "the changed clip's own latents"
    video = train.to_video(frames[2:3])
    torch.testing.assert_close(mixed[8:9], vae.encode(video).latent_dist.mean, atol=1e-5, rtol=1e-4)
    assert not list(cache.folder.glob("*.part")), "no half-written file left behind"

    # Another VAE (one weight moved, or made frame-wise) keeps its latents apart.
    moved = copy.deepcopy(vae)
    next(moved.parameters()).add_(1e-3)
    assert train.LatentCache(tmp_path / "latents", train.framewise_vae(vae)).folder != cache.folder
    moved_cache = train.LatentCache(tmp_path / "latents", moved)
    assert moved_cache.folder != cache.folder
    assert train.encode_bank(moved, bank, batch=3, cache=moved_cache)[1] == 0
    # The same weights saved by two runs (each with its own latent statistics) and loaded from their
    # folders are the same VAE: the next fine-tune reads what the last one wrote.
    from diffusers import AutoencoderKLWan

    loaded = []
    for run, mean in (("a", 0.0), ("b", 0.5)):
        vae.register_to_config(latents_mean=[mean] * train.LATENT_CHANNELS)
        vae.save_pretrained(tmp_path / run)
        loaded.append(AutoencoderKLWan.from_pretrained(tmp_path / run))
    assert train.vae_fingerprint(loaded[0]) == train.vae_fingerprint(loaded[1]) == train.vae_fingerprint(vae)
