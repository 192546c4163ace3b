"""Behind a CurveZMQ allow-list each job has an owner; on loopback jobs stay shared."""

import json

import zmq.auth

from backend.cli import main
from protocol import Error, JobList, JobStatus, Result
from protocol import errors as codes
from protocol.states import JobState

from .conftest import FAST, LONG, TIMEOUT, Backend, playblast, welcomed


def artist(folder, name, admin=False):
    """A key pair made by `keys --client NAME [--admin]`, copied into the allow-list; its key arguments."""
    assert main(["keys", "--dir", str(folder.parent / name), "--client", name, *(["--admin"] if admin else [])]) == 0
    public_file = folder.parent / name / f"{name}.key"
    (folder / "allowed_clients" / public_file.name).write_bytes(public_file.read_bytes())
    public, secret = zmq.auth.load_certificate(folder.parent / name / f"{name}.key_secret")
    return {"client_public_key": public, "client_secret_key": secret}


def answer_to(client, request_id):
    return client.wait(lambda m: getattr(m, "request_id", None) == request_id, TIMEOUT)


def test_only_the_owner_or_an_admin_cancels_and_others_see_no_prompts(pipe, tmp_path):
    keys = tmp_path / "keys"
    assert main(["keys", "--dir", str(keys)]) == 0
    people = {name: artist(keys, name, admin=name == "lead") for name in ("anna", "bea", "lead")}
    live = Backend(pipe, tmp_path / "jobs", keys_folder=keys).start()
    try:
        anna, bea, lead = (
            live.client(server_public_key=live.server.public_key, **people[name]) for name in ("anna", "bea", "lead")
        )
        for client in (anna, bea, lead):
            welcomed(client)
        anna.submit("anna-1", playblast(), "a red ball", settings=FAST)
        done = anna.wait(
            lambda m: isinstance(m, JobStatus) and (m.job_id, m.state) == ("anna-1", JobState.DONE), TIMEOUT
        )
        assert done[0].prompt == "a red ball"
        manifest = json.loads((tmp_path / "jobs" / "anna-1" / "manifest.json").read_text())
        assert manifest["owner"] == people["anna"]["client_public_key"].decode()

        listing = answer_to(bea, bea.list_jobs())[0]
        assert isinstance(listing, JobList) and listing.jobs[0]["job_id"] == "anna-1"
        assert listing.jobs[0]["prompt"] == "" and listing.jobs[0]["state"] == JobState.DONE
        assert answer_to(bea, bea.status("anna-1"))[0].prompt == ""
        result, frames = answer_to(bea, bea.fetch("anna-1"))
        assert isinstance(result, Result) and len(frames) == 5 and result.prompt == ""  # ids stay shared
        assert answer_to(anna, anna.list_jobs())[0].jobs[0]["prompt"] == "a red ball"
        assert answer_to(lead, lead.status("anna-1"))[0].prompt == "a red ball"

        answer_to(anna, anna.submit("anna-long", playblast(shift=1), "slow", settings=LONG))
        answer_to(anna, anna.submit("anna-next", playblast(shift=2), "waits", settings=FAST))
        refused = answer_to(bea, bea.cancel("anna-next"))[0]
        assert isinstance(refused, Error) and (refused.code, refused.job_id) == (codes.NOT_OWNER, "anna-next")
        assert "admin" in refused.message
        assert answer_to(bea, bea.status("anna-next"))[0].state == JobState.QUEUED
        cancelled = answer_to(lead, lead.cancel("anna-next"))[0]
        assert (cancelled.job_id, cancelled.state) == ("anna-next", JobState.CANCELLED)
        anna.cancel("anna-long")
        anna.wait(
            lambda m: isinstance(m, JobStatus) and (m.job_id, m.state) == ("anna-long", JobState.CANCELLED), TIMEOUT
        )
    finally:
        live.stop()


def test_on_loopback_any_connection_may_cancel_any_job(backend):
    first, second = backend.client(), backend.client()
    first.submit("shared", playblast(), "a ball", settings=LONG)
    first.wait(lambda m: isinstance(m, JobStatus) and m.state == JobState.RUNNING, TIMEOUT)
    second.cancel("shared")
    status, _ = second.wait(lambda m: isinstance(m, JobStatus) and m.state == JobState.CANCELLED, TIMEOUT)
    assert status.prompt == "a ball"
