"""The backend runs any model family the library's interface knows: the same job, previews and
subject masks on a Wan2.2 TI2V-layout pipeline (48 latent channels, 16x spatial compression) as on
Wan2.1's."""

import numpy as np
import pytest

from flowmotion.tiny import TI2V_LATENT_CHANNELS, build_tiny_ti2v_pipeline
from flowmotion.video import frames_from_png_bytes
from protocol import JobStatus, Preview
from protocol.states import JobState

from .conftest import FAST, LONG, TIMEOUT, Backend, playblast, welcomed
from .test_previews import collect, ended
from .test_server import fetched, subject_masks


@pytest.fixture(scope="module")
def ti2v():
    pipe = build_tiny_ti2v_pipeline()
    assert pipe.vae.config.z_dim == TI2V_LATENT_CHANNELS and pipe.vae_scale_factor_spatial == 16
    return pipe


def test_a_wan22_ti2v_job_runs_with_previews_and_subject_masks(ti2v, tmp_path):
    live = Backend(ti2v, tmp_path / "jobs", preview_every=0.0).start()
    try:
        client = live.client(previews=True)
        welcomed(client)
        shot, shot_masks = playblast(frames=5, height=32, width=48), subject_masks(5, 32, 48)
        # A job that runs until cancelled shows its previews; a short one lands.
        client.submit("ti2v-long", shot, "a red ball", seed=1, settings=LONG, masks=shot_masks)
        preview = client.wait(lambda m: isinstance(m, Preview), TIMEOUT)[0]
        assert preview.job_id == "ti2v-long" and preview.total == LONG["num_inference_steps"]
        client.cancel("ti2v-long")
        assert collect(client, ended("ti2v-long"))[-1].state == JobState.CANCELLED
        client.submit("ti2v-1", shot, "a red ball", seed=1, settings=FAST, masks=shot_masks)
        final = collect(client, ended("ti2v-1"))[-1]
        assert final.state == JobState.DONE, final
        result, frames = fetched(client, "ti2v-1")
        assert (result.frame_count, result.width, result.height) == (5, 48, 32)
        video = frames_from_png_bytes(frames)
        assert video.shape == (5, 32, 48, 3) and video.std() > 0
    finally:
        live.stop()


def test_the_two_families_give_different_takes_of_one_job(pipe, ti2v, tmp_path):
    takes = {}
    for name, model in (("wan21", pipe), ("wan22", ti2v)):
        live = Backend(model, tmp_path / name).start()
        try:
            client = live.client()
            welcomed(client)
            client.submit("same", playblast(frames=5, height=32, width=48), "a red ball", seed=2, settings=FAST)
            client.wait(lambda m: isinstance(m, JobStatus) and m.state == JobState.DONE, TIMEOUT)
            takes[name] = frames_from_png_bytes(fetched(client, "same")[1])
        finally:
            live.stop()
    assert takes["wan21"].shape == takes["wan22"].shape == (5, 32, 48, 3)
    assert not np.array_equal(takes["wan21"], takes["wan22"])
