import numpy as np
import pytest

from flowmotion.cli import build_parser, config_from_arguments, main
from flowmotion.config import FlowMotionConfig
from flowmotion.video import read_video, write_video

from .helpers import moving_square

FAST = ["--num-inference-steps", "4", "--guided-steps", "2", "--optimization-steps", "1", "--quiet"]


@pytest.fixture
def source_folder(tmp_path):
    return write_video(moving_square(frames=10, height=30, width=40), tmp_path / "playblast")


def test_transfer_writes_frames_of_the_source_size_and_count(source_folder, tmp_path, capsys):
    out = tmp_path / "take1"
    assert main(["transfer", str(source_folder), "--prompt", "a red ball", "--out", str(out), *FAST]) == 0
    frames, _ = read_video(out)
    assert frames.shape == (10, 30, 40, 3)
    captured = capsys.readouterr()
    summary = captured.out.strip().splitlines()[-1]
    # The embedded model works at most at the area of its training clips (80x48 = 3840 pixels) unless told
    # otherwise, in steps of 8 pixels (its VAE downsamples 4x, its transformer patches 2x2): 40x30 fits, and
    # only rounds to a legal 40x32.
    assert summary.startswith(f"wrote {out} (10 frames, 40x30; the model worked at 9 frames, 40x32) in ")
    assert "forward passes" in summary and "peak RSS" in summary
    assert "embedded (the built-in model" in captured.err


def test_max_area_flag_overrides_the_embedded_models_working_area(source_folder, tmp_path, capsys):
    out = tmp_path / "take"
    assert (
        main(["transfer", str(source_folder), "--prompt", "a cube", "--out", str(out), "--max-area", "1024", *FAST])
        == 0
    )
    assert "the model worked at 9 frames, 32x24) in " in capsys.readouterr().out


def test_transfer_to_mp4_with_asked_size(source_folder, tmp_path):
    out = tmp_path / "take.mp4"
    args = [
        "transfer",
        str(source_folder),
        "--prompt",
        "a cube",
        "--out",
        str(out),
        "--frames",
        "5",
        "--width",
        "48",
        "--height",
        "32",
        "--fps",
        "12",
        *FAST,
    ]
    assert main(args) == 0
    frames, fps = read_video(out)
    assert frames.shape == (5, 32, 48, 3) and fps == pytest.approx(12)


def test_every_config_field_has_a_flag():
    args = build_parser().parse_args(
        [
            "transfer",
            "src",
            "--prompt",
            "p",
            "--out",
            "o",
            "--num-inference-steps",
            "20",
            "--guided-steps",
            "4",
            "--optimization-steps",
            "5",
            "--learning-rate",
            "0.01",
            "--latent-alignment-weight",
            "1",
            "--difference-alignment-weight",
            "2",
            "--velocity-regularization-gamma",
            "0.5",
            "--guidance-scale",
            "3",
            "--source-guidance-scale",
            "1",
            "--source-prompt",
            "grey",
            "--source-motion",
            "clean_latent",
            "--no-motion-guidance",
            "--no-difference-alignment",
            "--no-velocity-regularization",
            "--max-sequence-length",
            "64",
        ]
    )
    assert config_from_arguments(args) == FlowMotionConfig(
        num_inference_steps=20,
        guided_steps=4,
        optimization_steps=5,
        learning_rate=0.01,
        latent_alignment_weight=1.0,
        difference_alignment_weight=2.0,
        velocity_regularization_gamma=0.5,
        guidance_scale=3.0,
        source_guidance_scale=1.0,
        source_prompt="grey",
        source_motion="clean_latent",
        motion_guidance=False,
        difference_alignment=False,
        velocity_regularization=False,
        max_sequence_length=64,
    )
    defaults = build_parser().parse_args(["transfer", "src", "--prompt", "p", "--out", "o"])
    assert config_from_arguments(defaults) == FlowMotionConfig()


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--guided-steps", "9"], "guided_steps (9) cannot exceed num_inference_steps (4)"),
        (["--num-inference-steps", "0"], "num_inference_steps must be at least 1"),
    ],
)
def test_bad_settings_fail_cleanly_and_write_nothing(source_folder, tmp_path, capsys, extra, words):
    out = tmp_path / "take"
    code = main(["transfer", str(source_folder), "--prompt", "p", "--out", str(out), *FAST, *extra])
    assert code == 2 and words in capsys.readouterr().err
    assert not out.exists()


def test_unreadable_source_fails_cleanly(tmp_path, capsys):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 100)
    out = tmp_path / "take"
    assert main(["transfer", str(broken), "--prompt", "p", "--out", str(out), *FAST]) == 2
    err = capsys.readouterr().err
    assert err.startswith("flowmotion: error: ") and "cannot be read as a video" in err
    assert "Traceback" not in err and not out.exists()


def test_mismatched_frames_fail_cleanly(tmp_path, capsys):
    import imageio.v3 as iio

    folder = tmp_path / "src"
    write_video(moving_square(frames=3, height=32, width=32), folder)
    iio.imwrite(folder / "frame_0004.png", np.zeros((16, 32, 3), np.uint8))
    assert main(["transfer", str(folder), "--prompt", "p", "--out", str(tmp_path / "o"), *FAST]) == 2
    assert "frame 4 (frame_0004.png) is 32x16 but frame 1 (frame_0001.png) is 32x32" in capsys.readouterr().err


@pytest.mark.slow
def test_a_subject_mask_folder_steers_the_take_and_a_mismatched_one_is_refused(source_folder, tmp_path, capsys):
    mask = np.zeros((10, 30, 40, 3), np.uint8)
    mask[:, 10:22, 4:16] = 255
    mask_folder = write_video(mask, tmp_path / "subjects")
    plain, steered = tmp_path / "plain", tmp_path / "steered"
    assert main(["transfer", str(source_folder), "--prompt", "a cube", "--out", str(plain), *FAST]) == 0
    assert (
        main(
            [
                "transfer",
                str(source_folder),
                "--prompt",
                "a cube",
                "--out",
                str(steered),
                "--subject-mask",
                str(mask_folder),
                *FAST,
            ]
        )
        == 0
    )
    assert not np.array_equal(read_video(plain)[0], read_video(steered)[0])
    short = write_video(mask[:6], tmp_path / "short")
    out = tmp_path / "refused"
    assert (
        main(
            [
                "transfer",
                str(source_folder),
                "--prompt",
                "a cube",
                "--out",
                str(out),
                "--subject-mask",
                str(short),
                *FAST,
            ]
        )
        == 2
    )
    assert "the subject mask has 6 frames of 40x30 but the source has 10 frames" in capsys.readouterr().err
    assert not out.exists()


def test_the_plan_is_printed_and_the_runtime_flags_reach_it(source_folder, tmp_path, capsys):
    out = tmp_path / "take"
    args = [
        "transfer",
        str(source_folder),
        "--prompt",
        "a cube",
        "--out",
        str(out),
        "--optimized",
        "--vae-tiling",
        "--no-batch-guidance",
        "--fp8",
        *FAST,
    ]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "plan: vae tiling on: set by the runtime options" in err
    assert "plan: batch guidance off: set by the config" in err
    assert "plan: offload text encoder off: the text encoder is in host memory already" in err
    assert "flowmotion: FP8 linear layers off, bf16 kept: FP8 matrix products need a CUDA GPU" in err


def test_optimized_keeps_its_own_defaults_unless_a_flag_says_otherwise():
    parse = build_parser().parse_args
    base = ["transfer", "src", "--prompt", "p", "--out", "o", "--optimized"]
    assert config_from_arguments(parse(base)) == FlowMotionConfig.optimized()
    assert not config_from_arguments(
        parse(base + ["--no-reuse-velocity-across-iterations"])
    ).reuse_velocity_across_iterations
    assert config_from_arguments(parse(base + ["--batch-guidance"])).batch_guidance is True
