"""Camera Placement: the playblast's camera move read from its frames and imposed on the take's layout."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from flowmotion import FlowMotionConfig, forward_pass_count, transfer
from flowmotion.camera import (
    accumulate,
    camera_track,
    frame_motion,
    latent_frame_times,
    phase_shift,
    place_camera,
    relative_to,
)
from flowmotion.transfer import placement_steps
from flowmotion.video import retime_indices

from .helpers import seeded

FAST = FlowMotionConfig(num_inference_steps=8, guided_steps=2, optimization_steps=1)


def texture(height: int, width: int, seed: int = 0) -> torch.Tensor:
    """A smooth random grey image (height, width) in [0, 1], detailed enough to lock on to."""
    noise = torch.rand(1, 1, height // 4, width // 4, generator=seeded(seed))
    return F.interpolate(noise, size=(height, width), mode="bicubic", align_corners=False)[0, 0].clamp(0, 1)


def moved(image: torch.Tensor, scale: float, shift_x: float, shift_y: float) -> torch.Tensor:
    """`image` with a point p (normalised, centre 0) moved to scale * p + shift."""
    height, width = image.shape
    ys = torch.linspace(-1 + 1 / height, 1 - 1 / height, height)
    xs = torch.linspace(-1 + 1 / width, 1 - 1 / width, width)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    grid = torch.stack([(grid_x - shift_x) / scale, (grid_y - shift_y) / scale], dim=-1)[None]
    return F.grid_sample(image[None, None], grid, padding_mode="reflection", align_corners=False)[0, 0]


def camera_shot(motion: tuple[float, float, float], frames: int = 9, height: int = 96, width: int = 160) -> np.ndarray:
    """uint8 frames of a textured set that moves by `motion` (scale, shift x, shift y) every frame."""
    base = texture(height * 2, width * 2)[height // 2 : height // 2 + height, width // 2 : width // 2 + width]
    scale, shift_x, shift_y = motion
    images = [moved(base, scale**k, shift_x * k, shift_y * k) for k in range(frames)]
    return (torch.stack(images)[..., None].expand(-1, -1, -1, 3) * 255).round().byte().numpy()


def test_phase_shift_finds_a_sub_pixel_shift_and_a_plain_image_gives_a_low_peak():
    image = texture(64, 96)
    shifted = moved(image, 1.0, 2 * 3.5 / 96, -2 * 2.0 / 64)  # 3.5 px right, 2 px up
    shift, peak = phase_shift(image, shifted)
    assert torch.allclose(shift, torch.tensor([3.5, -2.0], dtype=shift.dtype), atol=0.25)
    _, plain_peak = phase_shift(torch.full((64, 96), 0.5) + 0.001 * torch.rand(64, 96, generator=seeded(1)), image)
    assert plain_peak < 0.5 * peak


@pytest.mark.parametrize(
    "motion",
    [(1.0, 0.04, 0.0), (1.0, -0.03, 0.02), (1.04, 0.0, 0.0), (0.96, 0.02, 0.0)],
    ids=["pan right", "pan left and down", "dolly in", "dolly out while panning"],
)
def test_frame_motion_reads_pans_and_dollies(motion):
    frames = torch.from_numpy(camera_shot(motion)).float().mean(dim=-1) / 255
    read = frame_motion(frames)
    expected = torch.tensor(motion, dtype=read.dtype).expand_as(read)
    assert torch.allclose(read.median(dim=0).values, expected[0], atol=0.012)


def test_motions_accumulate_from_the_first_frame_and_relate_to_any_frame():
    motions = torch.tensor([[1.1, 0.1, 0.0], [0.9, 0.0, -0.2]], dtype=torch.float64)
    track = accumulate(motions)
    assert torch.allclose(track[0], torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64))
    point = torch.tensor([0.3, -0.4], dtype=torch.float64)
    once = 1.1 * point + torch.tensor([0.1, 0.0], dtype=torch.float64)
    twice = 0.9 * once + torch.tensor([0.0, -0.2], dtype=torch.float64)
    assert torch.allclose(track[2, 0] * point + track[2, 1:], twice)
    # From frame 1 to frame 2 is the second motion itself.
    assert torch.allclose(relative_to(track, 1)[2], motions[1])


def test_latent_frame_times_follow_the_vae_layout():
    assert latent_frame_times(17, 2) == [0.0] + [2 * k - 0.5 for k in range(1, 9)]
    times = latent_frame_times(81, 4)
    assert len(times) == 21 and times[1] == 2.5 and times[-1] == 78.5


def test_camera_track_of_a_pan_and_none_for_a_still_camera():
    track = camera_track(camera_shot((1.0, 0.03, 0.0)), model_frames=9, temporal_factor=2)
    assert track is not None and track.shape == (5, 3)
    times = torch.tensor(latent_frame_times(9, 2))
    assert torch.allclose(track[:, 1], 0.03 * times, atol=0.02)
    assert torch.allclose(track[:, 0], torch.ones(5), atol=0.01)
    assert camera_track(camera_shot((1.0, 0.0, 0.0)), model_frames=9, temporal_factor=2) is None
    # A subject crossing a still set is not a camera move, nor is flicker with nothing to lock on to.
    crossing = camera_shot((1.0, 0.0, 0.0))
    for frame in range(9):
        crossing[frame, 30:50, 10 + 12 * frame : 30 + 12 * frame] = 250
    assert camera_track(crossing, model_frames=9, temporal_factor=2) is None
    flicker = np.random.default_rng(0).integers(0, 256, (9, 96, 160, 3), dtype=np.uint8)
    assert camera_track(flicker, model_frames=9, temporal_factor=2) is None


@pytest.mark.parametrize("frames, height, width", [(1, 48, 80), (2, 48, 80), (9, 7, 5), (33, 270, 480)])
def test_camera_track_takes_shots_of_any_length_and_size(frames, height, width):
    shot = np.random.default_rng(frames).integers(0, 256, (frames, height, width, 3), dtype=np.uint8)
    assert camera_track(shot, model_frames=9, temporal_factor=2) is None  # nothing that moves as a set


def test_camera_track_of_a_portrait_pan():
    shot = camera_shot((1.0, 0.0, 0.03), frames=9, height=160, width=96)  # tilting down, upright frame
    track = camera_track(shot, model_frames=9, temporal_factor=2)
    assert track is not None
    assert torch.allclose(track[:, 2], 0.03 * torch.tensor(latent_frame_times(9, 2)), atol=0.02)


def test_the_track_hardly_changes_with_the_render_size():
    shot = camera_shot((1.0, 0.02, -0.01), frames=9, height=96, width=160)
    larger = F.interpolate(torch.from_numpy(shot).permute(0, 3, 1, 2).float(), size=(288, 480), mode="bilinear")
    larger_shot = larger.round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
    small, large = (camera_track(s, model_frames=9, temporal_factor=2) for s in (shot, larger_shot))
    assert small is not None and large is not None
    assert torch.allclose(small, large, atol=0.025)  # within a fortieth of the frame
    assert torch.equal(torch.sign(small[1:, 1:]), torch.sign(large[1:, 1:]))


def test_camera_track_retimes_to_the_model_frames():
    shot = camera_shot((1.0, 0.02, 0.0), frames=17)
    track = camera_track(shot, model_frames=9, temporal_factor=2)
    assert track is not None and track.shape == (5, 3)
    assert track[-1, 1] == pytest.approx(0.02 * 2 * latent_frame_times(9, 2)[-1], abs=0.03)
    # The track reads the very frames the model is given (half-way ties included: 25 -> 17 frames).
    long_shot = camera_shot((1.0, 0.02, 0.0), frames=25)
    given = long_shot[retime_indices(25, 17)]
    assert torch.equal(camera_track(long_shot, 17, 2), camera_track(given, 17, 2))


def test_placement_moves_the_middle_frame_by_the_track_and_keeps_what_it_cannot_see():
    prediction = torch.randn(1, 4, 5, 8, 12, generator=seeded(2))
    step = 2 / 12  # one latent position, in normalised units
    track = torch.tensor([[1.0, step * k, 0.0] for k in range(5)])
    placed = place_camera(prediction, track)
    middle = prediction[:, :, 2]
    for frame in range(1, 5):
        offset = frame - 2  # the content moves right by one position a frame
        for column in range(12):
            if 0 <= column - offset < 12:
                assert torch.allclose(placed[:, :, frame, :, column], middle[:, :, :, column - offset], atol=1e-5)
            else:
                assert torch.equal(placed[:, :, frame, :, column], prediction[:, :, frame, :, column])
    # The first latent frame gets the warped content in its own channel statistics.
    first = placed[:, :, 0]
    assert torch.allclose(first.mean(dim=(2, 3)), prediction[:, :, 0].mean(dim=(2, 3)), atol=0.15)
    # A still track holds every latent frame to the middle one's content.
    still = place_camera(prediction, torch.tensor([[1.0, 0.0, 0.0]] * 5))
    assert torch.allclose(still[:, :, 1:], middle[:, :, None].expand(-1, -1, 4, -1, -1), atol=1e-5)


def test_a_moving_camera_costs_one_velocity_per_placement_and_repeats_exactly(tiny_pipe):
    shot = camera_shot((1.0, 0.04, 0.0), height=32, width=48)
    steps = len(placement_steps(sigmas(tiny_pipe, FAST), FAST))
    assert steps >= 2
    placed = transfer(tiny_pipe, shot, "a street", config=FAST, generator=seeded(0))
    again = transfer(tiny_pipe, shot, "a street", config=FAST, generator=seeded(0))
    off = transfer(tiny_pipe, shot, "a street", config=FAST.replace(camera_placement=False), generator=seeded(0))
    assert placed.stats.forward_passes == forward_pass_count(FAST, placements=steps)
    assert (placed.stats.camera_placements, placed.stats.subject_placements) == (steps, 0)
    assert off.stats.forward_passes == forward_pass_count(FAST)
    assert off.stats.camera_placements == 0
    assert np.array_equal(placed.frames, again.frames)
    assert not np.allclose(placed.frames, off.frames)
    # No placements at all: the camera is left alone too.
    none = transfer(tiny_pipe, shot, "a street", config=FAST.replace(subject_placements=0), generator=seeded(0))
    assert none.stats.forward_passes == forward_pass_count(FAST)
    assert np.array_equal(none.frames, off.frames)


def test_a_still_camera_or_a_shot_with_subject_masks_places_no_camera(tiny_pipe):
    still = camera_shot((1.0, 0.0, 0.0), height=32, width=48)
    still_take = transfer(tiny_pipe, still, "a street", config=FAST)
    assert still_take.stats.forward_passes == forward_pass_count(FAST)
    assert still_take.stats.camera_placements == 0
    pan = camera_shot((1.0, 0.04, 0.0), height=32, width=48)
    mask = np.zeros(pan.shape[:3], bool)
    mask[:, 10:20, 10:20] = True
    steps = len(placement_steps(sigmas(tiny_pipe, FAST), FAST))
    with_masks = transfer(tiny_pipe, pan, "a street", config=FAST, generator=seeded(3), subject_mask=mask)
    camera_off = FAST.replace(camera_placement=False)
    masks_only = transfer(tiny_pipe, pan, "a street", config=camera_off, generator=seeded(3), subject_mask=mask)
    assert with_masks.stats.forward_passes == forward_pass_count(FAST, placements=steps)
    assert (with_masks.stats.subject_placements, with_masks.stats.camera_placements) == (steps, 0)
    assert np.array_equal(with_masks.frames, masks_only.frames)


def test_on_the_embedded_model_the_take_pans_the_way_the_playblast_does():
    """The embedded model draws its set with the same drift whichever way the playblast pans; with
    Camera Placement the take's final latent moves the playblast's way, by about its amount."""
    import flowmotion
    from flowmotion.loading import max_area_for

    pipe = flowmotion.load_pipeline(flowmotion.EMBEDDED_MODEL, device="cpu")
    config = FlowMotionConfig.optimized(num_inference_steps=20)
    times = latent_frame_times(17, 2)
    shifts: dict[tuple[float, bool], float] = {}
    for pan in (-0.025, 0.025):
        shot = camera_shot((1.0, pan, 0.0), frames=17, height=96, width=160)
        for placing in (True, False):
            take = transfer(
                pipe,
                shot,
                "a red cube on grass",
                config=config.replace(camera_placement=placing),
                generator=seeded(4),
                max_area=max_area_for(flowmotion.EMBEDDED_MODEL),
                output_type="latent",
            )
            latent = take.frames[0].mean(dim=0)  # (frames, height, width), channel mean
            shifts[pan, placing] = float(phase_shift(latent[2], latent[-2])[0][0])
            expected = pan * (times[-2] - times[2]) * latent.shape[-1] / 2  # latent positions
            if placing:
                assert abs(shifts[pan, placing] - expected) < 0.5 * abs(expected), (pan, shifts)
    print("latent shift between frames 2 and -2 by (pan, placement):", shifts)
    assert abs(shifts[0.025, False] - shifts[-0.025, False]) < 1.0  # without it, the model's own drift
    assert shifts[0.025, True] - shifts[-0.025, True] > 1.6 * abs(expected)  # the two pans come apart


def sigmas(pipe, config: FlowMotionConfig) -> list[float]:
    from flowmotion.model import model_for

    return model_for(pipe).schedule(config.num_inference_steps)[1]
