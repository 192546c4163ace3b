"""Live previews: sent while a job runs, throttled, only to its owner's connections that asked, in
protocol version 4, and dropped rather than queued for a client that does not read."""

import math

import numpy as np
import torch

from backend.previews import PreviewSlot, preview_hook
from flowmotion.preview import first_channels_rgb
from flowmotion.request import StepInfo
from protocol import Accepted, JobStatus, Preview, Welcome
from protocol.client import BackendClient
from protocol.messages import MAX_PREVIEW_FRAMES, MAX_PREVIEW_SIDE
from protocol.states import JobState

from .conftest import FAST, LONG, TIMEOUT, Backend, playblast, welcomed
from .test_owners import artist

STEPS = 24
EVERY_STEPS = 2


def ended(job_id):
    return lambda m: isinstance(m, JobStatus) and m.job_id == job_id and m.state.ended


def collect(client, until, timeout=TIMEOUT) -> list:
    """Every message up to and including the one `until` takes (errors raise)."""
    seen = []

    def note(message):
        seen.append(message)
        return until(message)

    client.wait(note, timeout)
    return seen


def previews_of(messages) -> list[Preview]:
    return [m for m in messages if isinstance(m, Preview)]


def test_a_job_sends_throttled_previews_before_it_is_done(pipe, tmp_path):
    live = Backend(pipe, tmp_path / "jobs", preview_every=0.0, preview_every_steps=EVERY_STEPS).start()
    try:
        client = live.client(previews=True)
        welcomed(client)
        client.submit("take-1", playblast(), "a red ball", settings={**FAST, "num_inference_steps": STEPS})
        messages = collect(client, ended("take-1"))
        assert messages[-1].state == JobState.DONE
        previews = previews_of(messages)
        assert 1 <= len(previews) <= math.ceil(STEPS / EVERY_STEPS)
        assert all(p.step % EVERY_STEPS == 0 and p.total == STEPS and p.job_id == "take-1" for p in previews)
        assert [p.step for p in previews] == sorted({p.step for p in previews})
        assert all(
            1 <= p.frame_count <= MAX_PREVIEW_FRAMES and max(p.width, p.height) <= MAX_PREVIEW_SIDE for p in previews
        )
    finally:
        live.stop()


def test_previews_go_only_to_version_4_clients_that_asked(pipe, tmp_path):
    live = Backend(pipe, tmp_path / "jobs", preview_every=0.0).start()
    try:
        asking, silent, older = live.client(previews=True), live.client(), live.client(previews=True)
        for client in (asking, silent):
            welcomed(client)
        older.hello(2)  # an older add-on: it speaks version 2, which has no previews
        older.wait(lambda m: isinstance(m, Welcome) and m.version == 2, TIMEOUT)
        asking.submit("shared", playblast(), "a red ball", settings=LONG)  # runs until cancelled
        asking.wait(lambda m: isinstance(m, Preview), TIMEOUT)
        for client in (silent, older):
            client.status("shared")
            client.wait(lambda m: isinstance(m, JobStatus) and m.job_id == "shared", TIMEOUT)  # now following
        for _ in range(2):  # previews go on while the others follow the job
            asking.wait(lambda m: isinstance(m, Preview), TIMEOUT)
        asking.cancel("shared")
        got = {
            name: previews_of(collect(client, ended("shared")))
            for name, client in (("silent", silent), ("older", older))
        }
        assert got["silent"] == [] and got["older"] == []
    finally:
        live.stop()


def test_another_artists_connection_gets_no_previews(pipe, tmp_path):
    keys = tmp_path / "keys"
    from backend.cli import main

    assert main(["keys", "--dir", str(keys)]) == 0
    people = {name: artist(keys, name, admin=name == "lead") for name in ("anna", "bea", "lead")}
    live = Backend(pipe, tmp_path / "jobs", keys_folder=keys, preview_every=0.0).start()
    try:
        anna, bea, lead = (
            live.client(server_public_key=live.server.public_key, previews=True, **people[name])
            for name in ("anna", "bea", "lead")
        )
        for client in (anna, bea, lead):
            welcomed(client)
        anna.submit("anna-1", playblast(), "a red ball", settings=LONG)  # runs until cancelled
        anna.wait(lambda m: isinstance(m, Preview), TIMEOUT)
        for client in (bea, lead):
            client.status("anna-1")
            client.wait(lambda m: isinstance(m, JobStatus) and m.job_id == "anna-1", TIMEOUT)  # now following
        for _ in range(2):  # previews go on while the others follow the job
            anna.wait(lambda m: isinstance(m, Preview), TIMEOUT)
        anna.cancel("anna-1")
        got = {name: previews_of(collect(client, ended("anna-1"))) for name, client in (("bea", bea), ("lead", lead))}
        assert got["bea"] == [] and got["lead"] == []
    finally:
        live.stop()


def test_a_client_that_does_not_read_gets_previews_dropped_not_queued(pipe, tmp_path):
    # In-process transport: a message stays unread in the pipe until the client reads it, so
    # what the backend holds for the idle client is exactly what it queued for it.
    live = Backend(pipe, tmp_path / "jobs", bind="inproc://previews", preview_every=0.0).start()
    context = live.server.context
    idle = BackendClient(live.address, previews=True, context=context, connect_timeout=TIMEOUT).connect()
    watching = BackendClient(live.address, previews=True, context=context, connect_timeout=TIMEOUT).connect()
    try:
        for client in (idle, watching):
            welcomed(client)
        idle.submit("long", playblast(), "a red ball", settings=LONG)
        idle.wait(lambda m: isinstance(m, Accepted), TIMEOUT)  # so the watcher's status finds the job
        watching.status("long")
        # From here the idle client reads nothing while the job goes on making previews.
        seen = []
        watching.wait(lambda m: isinstance(m, Preview) and len(seen.append(m) or seen) >= 3, TIMEOUT)
        dropped = sum(lost for _, lost in live.server.outbox.offers.values())
        assert dropped >= 1  # the idle client's: it holds its first one still
        watching.cancel("long")
        watching.wait(lambda m: isinstance(m, JobStatus) and m.state == JobState.CANCELLED, TIMEOUT)
        late = collect(idle, ended("long"))
        # Queued, the idle client would now read every preview the watcher saw (three or more); dropped, it
        # holds the one it never read, and at most one more sent in a moment its reader freed the first.
        assert 1 <= len(previews_of(late)) <= 2 < len(seen) and late[-1].state == JobState.CANCELLED
    finally:
        for client in (idle, watching):
            client.close()
        live.stop()


def step(number: int, total: int = 10) -> StepInfo:
    latent = torch.full((1, 16, 5, 4, 6), float(number) / total)
    return StepInfo(number, total, 1.0, latent, latent)


def test_the_hook_waits_its_seconds_between_previews_and_replaces_an_untaken_one():
    times = iter([0.0, 0.4, 1.0, 1.5, 2.6, 2.7])
    slot = PreviewSlot()
    hook = preview_hook("take", first_channels_rgb(16), slot, every=1.0, clock=lambda: next(times))
    taken = []
    for number in range(6):
        hook(step(number))
        if number in (0, 3):
            taken.append(slot.take())
    taken.append(slot.take())
    assert [p.message.step for p in taken] == [0, 2, 4] and slot.replaced == 0
    hook = preview_hook("take", first_channels_rgb(16), slot, every=0.0, clock=lambda: 0.0)
    for number in range(3):
        hook(step(number))
    assert slot.take().message.step == 2 and slot.replaced == 2 and slot.take() is None


def test_a_large_take_is_previewed_as_a_few_small_frames():
    slot = PreviewSlot()
    latent = torch.randn(1, 16, 21, 60, 300)
    preview_hook("big", first_channels_rgb(16), slot, every=0.0)(StepInfo(0, 50, 1.0, latent, latent))
    preview = slot.take()
    assert (preview.message.frame_count, preview.message.height, preview.message.width) == (4, 20, 100)
    pixels = np.frombuffer(preview.pixels, np.uint8).reshape(4, 20, 100, 3)
    expected = np.clip(latent[0, :3, 20, 57, 297].numpy() / 4 + 0.5, 0, 1) * 255  # every third position
    assert np.abs(pixels[-1, -1, -1].astype(float) - expected).max() <= 1


def test_a_failing_preview_stops_previews_not_the_job():
    slot = PreviewSlot()
    hook = preview_hook("take", first_channels_rgb(48), slot, every=0.0)  # a 48-channel map on a 16-channel latent
    hook(step(0))
    hook(step(1))
    assert slot.take() is None
