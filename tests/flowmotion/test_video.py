import numpy as np
import pytest
import torch

from flowmotion import FlowMotionError
from flowmotion.video import (
    as_frames,
    frames_from_png_bytes,
    frames_to_png_bytes,
    legal_frame_count,
    legal_side,
    plan_shape,
    read_video,
    resample,
    retime_indices,
    write_video,
)

from .helpers import moving_square


@pytest.mark.parametrize(
    "side, legal",
    [(1, 16), (16, 16), (23, 16), (24, 32), (480, 480), (720, 720), (1080, 1088), (1079, 1072), (100, 96)],
)
def test_sides_round_to_the_nearest_multiple_of_16(side, legal):
    assert legal_side(side) == legal


@pytest.mark.parametrize(
    "frames, legal",
    [(1, 1), (2, 1), (3, 5), (4, 5), (5, 5), (6, 5), (7, 9), (48, 49), (49, 49), (50, 49), (81, 81), (100, 101)],
)
def test_frame_counts_map_to_the_nearest_4k_plus_1(frames, legal):
    assert legal_frame_count(frames) == legal


def test_plan_returns_exactly_what_was_asked_and_legal_model_shape():
    plan = plan_shape(30, 1080, 1920)
    assert (plan.out_frames, plan.out_height, plan.out_width) == (30, 1080, 1920)
    assert (plan.model_frames, plan.model_height, plan.model_width) == (29, 1088, 1920)
    plan = plan_shape(30, 1080, 1920, num_frames=49, height=480, width=720)
    assert (plan.out_frames, plan.out_height, plan.out_width) == (49, 480, 720)
    assert (plan.model_frames, plan.model_height, plan.model_width) == (49, 480, 720)


def test_plan_caps_the_model_area_and_keeps_the_asked_size():
    plan = plan_shape(49, 1080, 1920, max_area=480 * 832)
    assert (plan.out_height, plan.out_width) == (1080, 1920)
    assert (plan.model_height, plan.model_width) == (464, 832)
    assert plan.model_height * plan.model_width <= 480 * 832
    assert plan_shape(49, 480, 720, max_area=480 * 832).model_height == 480  # under the cap: unchanged
    with pytest.raises(FlowMotionError, match="max_area 100 is below the smallest model frame"):
        plan_shape(9, 64, 64, max_area=100)


def test_plan_refuses_non_positive_sizes():
    with pytest.raises(FlowMotionError, match="height must be at least 1"):
        plan_shape(9, 32, 32, height=0)


def test_retiming_keeps_first_and_last_frames():
    assert retime_indices(10, 9) == [0, 1, 2, 3, 5, 6, 7, 8, 9]
    assert retime_indices(3, 5) == [0, 1, 1, 2, 2]
    assert retime_indices(1, 4) == [0, 0, 0, 0]
    assert retime_indices(5, 1) == [0]


def test_resample_gives_the_asked_shape():
    frames = torch.rand(7, 3, 20, 30)
    assert resample(frames, 5, 16, 32).shape == (5, 3, 16, 32)
    assert resample(frames, 7, 20, 30) is frames


def _write_pngs(folder, frames, names=None):
    import imageio.v3 as iio

    folder.mkdir(parents=True, exist_ok=True)
    for index, frame in enumerate(frames):
        iio.imwrite(folder / (names[index] if names else f"f{index + 1}.png"), frame)


def test_png_folder_reads_in_natural_order(tmp_path):
    frames = moving_square(frames=11)
    names = [f"shot.{n}.png" for n in range(1, 12)]  # shot.10 sorts after shot.9
    _write_pngs(tmp_path / "src", frames, names)
    read, fps = read_video(tmp_path / "src")
    assert fps is None and np.array_equal(read, frames)


def test_video_file_round_trip(tmp_path):
    frames = moving_square(frames=9, height=32, width=48, noise=0)
    path = write_video(frames, tmp_path / "clip.mp4", fps=12)
    read, fps = read_video(path)
    assert read.shape == frames.shape and fps == pytest.approx(12)
    assert np.abs(read.astype(int) - frames.astype(int)).mean() < 4  # lossy codec


def test_png_folder_output_round_trip_and_rewrite(tmp_path):
    frames = moving_square(frames=5)
    write_video(frames, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir())[0] == "frame_0001.png"
    write_video(frames[:3], tmp_path / "out")  # an earlier result is replaced whole
    assert np.array_equal(read_video(tmp_path / "out")[0], frames[:3])


def test_output_folder_with_other_files_is_left_alone(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("keep me")
    with pytest.raises(FlowMotionError, match="already holds other files"):
        write_video(moving_square(frames=3), tmp_path / "out")
    assert (tmp_path / "out" / "notes.txt").read_text() == "keep me"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no staging folder left behind


def test_missing_source(tmp_path):
    with pytest.raises(FlowMotionError, match="does not exist"):
        read_video(tmp_path / "nope.mp4")


def test_empty_folder(tmp_path):
    with pytest.raises(FlowMotionError, match="holds no PNG or JPEG frames"):
        read_video(tmp_path)


def test_unreadable_video_file(tmp_path):
    path = tmp_path / "broken.mp4"
    path.write_bytes(b"this is not a video")
    with pytest.raises(FlowMotionError, match="cannot be read as a video"):
        read_video(path)


def test_unreadable_frame_is_named(tmp_path):
    _write_pngs(tmp_path, moving_square(frames=2))
    (tmp_path / "f3.png").write_bytes(b"garbage")
    with pytest.raises(FlowMotionError, match=r"frame 3 \(f3.png\) cannot be read"):
        read_video(tmp_path)


def test_frames_of_different_sizes_are_named(tmp_path):
    _write_pngs(tmp_path, moving_square(frames=2, height=32, width=48))
    _write_pngs(tmp_path, moving_square(frames=1, height=36, width=48), names=["f3.png"])
    with pytest.raises(FlowMotionError, match=r"frame 3 \(f3.png\) is 48x36 but frame 1 \(f1.png\) is 48x32"):
        read_video(tmp_path)


def test_single_image_is_refused_with_a_hint(tmp_path):
    _write_pngs(tmp_path, moving_square(frames=1))
    with pytest.raises(FlowMotionError, match="pass the folder"):
        read_video(tmp_path / "f1.png")


def test_array_forms():
    frames = moving_square(frames=3)
    assert as_frames(frames) is not None and np.array_equal(as_frames(frames), frames)
    assert np.array_equal(as_frames(frames.astype(np.float32) / 255.0), frames)
    assert np.array_equal(as_frames(list(frames)), frames)
    rgba = np.concatenate([frames, np.full(frames.shape[:3] + (1,), 255, np.uint8)], axis=-1)
    assert np.array_equal(as_frames(rgba), frames)
    with pytest.raises(FlowMotionError, match="no frames"):
        as_frames(np.zeros((0, 8, 8, 3), np.uint8))
    with pytest.raises(FlowMotionError, match="expected \\(frames, height, width, 3\\)"):
        as_frames(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(FlowMotionError, match="cannot use a int"):
        as_frames(3)


def test_png_bytes_round_trip_and_errors():
    frames = moving_square(frames=3)
    parts = frames_to_png_bytes(frames)
    assert np.array_equal(frames_from_png_bytes(parts), frames)
    with pytest.raises(FlowMotionError, match="frame 2 is not a PNG"):
        frames_from_png_bytes([parts[0], b"GIF89a....", parts[2]])
    with pytest.raises(FlowMotionError, match="frame 2 is a damaged PNG"):
        frames_from_png_bytes([parts[0], parts[1][:40]])
    other = frames_to_png_bytes(moving_square(frames=1, height=16, width=16))[0]
    with pytest.raises(FlowMotionError, match="frame 2 is 16x16 but frame 1 is 48x32"):
        frames_from_png_bytes([parts[0], other])
    with pytest.raises(FlowMotionError, match="no frames"):
        frames_from_png_bytes([])


def test_a_mask_on_a_transparent_film_is_read_from_its_alpha(tmp_path):
    import imageio.v3 as iio

    from flowmotion.video import frames_from_png_bytes, read_video

    rgba = np.zeros((2, 4, 6, 4), np.uint8)
    rgba[..., :3] = (200, 10, 10)  # the subject's colour, everywhere
    rgba[:, 1:3, 2:4, 3] = 255  # opaque only where the subject is
    parts = [iio.imwrite("<bytes>", frame, extension=".png") for frame in rgba]
    masks = frames_from_png_bytes(parts, noun="subject mask", alpha_is_mask=True)
    assert masks.shape == (2, 4, 6, 3) and np.array_equal(masks[..., 0], rgba[..., 3])
    assert np.array_equal(frames_from_png_bytes(parts)[..., 0], rgba[..., 0])  # a frame keeps its colour
    folder = tmp_path / "subjects"
    folder.mkdir()
    for number, part in enumerate(parts, start=1):
        (folder / f"frame_{number:04d}.png").write_bytes(part)
    assert np.array_equal(read_video(folder, alpha_is_mask=True)[0], masks)
    with pytest.raises(FlowMotionError, match="subject mask 2 is not a PNG"):
        frames_from_png_bytes([parts[0], b"nope"], noun="subject mask")


@pytest.mark.parametrize("name", ["take.mp4", "frames"])
def test_a_write_that_fails_midway_leaves_the_earlier_take_and_no_staging(tmp_path, monkeypatch, name):
    import imageio.v3 as iio

    frames = moving_square(frames=3)
    write_video(frames, tmp_path / name)
    earlier = sorted((p.name, p.stat().st_size) for p in tmp_path.rglob("*"))
    real_imwrite = iio.imwrite

    def encoder_dies(path, *args, **kwargs):
        real_imwrite(path, *args, **kwargs)  # something reaches the disk, then the write fails
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(iio, "imwrite", encoder_dies)
    with pytest.raises(OSError, match="No space"):
        write_video(frames[:1], tmp_path / name)
    assert sorted((p.name, p.stat().st_size) for p in tmp_path.rglob("*")) == earlier
