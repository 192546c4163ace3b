"""The README's main job, end to end: examples/demo.py from shot.blend (a held-out shot of the
embedded model's Blender world) to a take in a saved .blend, and how closely the take follows."""

import os
import re
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import pytest

# The demo runs real Blender and the embedded model end to end: minutes, not seconds.
pytestmark = [pytest.mark.blender, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
WIDTH, HEIGHT = 320, 192
MAX_TIMES_STANDING_STILL = 1.5


def test_the_demo_lands_a_take_and_writes_its_comparisons(tmp_path):
    out = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "demo.py"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "take take_001: 17 frames on channel 1 at frame 1" in result.stdout
    # The hopping ball went along as a subject mask, and the demo says how far the take's subject stays
    # from it, against a subject standing still (the blockout benchmark's figure). The shipped model
    # (80x48, fine-tuned on Blender shots) with Subject Placement comes 1.10 times as far as standing
    # still at the demo's seed 7 (its ball is half yellow; seeds 0 to 5: 1.15 to 1.38), and a take
    # without a red subject would come 3.4. The bound keeps a margin for other CPUs' floating-point order.
    figure = re.search(r"that is (\d+\.\d+) times as far as standing still", result.stdout)
    assert figure and float(figure.group(1)) <= MAX_TIMES_STANDING_STILL, result.stdout[-1500:]
    assert re.search(r"the take's red subject is on average \d+ px from the playblast's subject", result.stdout)
    assert re.search(r"within 32 px of the playblast's subject in \d+ of 17 frames", result.stdout)
    assert re.search(r"the take shows a red subject in \d+ of 17 frames", result.stdout)
    assert (out / "shot010.blend").is_file()
    folders = list((out / "flowmotion" / "shot010").glob("*/take_001-*"))
    assert len(folders) == 1, folders
    frames = sorted(folders[0].glob("frame_*.png"))
    assert len(frames) == 17 and iio.imread(frames[0]).shape == (HEIGHT, WIDTH, 3)
    sheet = iio.imread(out / "contact_sheet.png")
    assert sheet.shape == (HEIGHT * 2 + 4, WIDTH * 6, 3)
    video = iio.imread(out / "side_by_side.mp4", plugin="FFMPEG", index=None)
    assert video.shape[:3] == (17, HEIGHT, WIDTH * 2 + 4)
