"""One job-state vocabulary: JobState on the wire, in the job maps and in the manifests."""

import json

import msgpack
import pytest

import protocol as p
from protocol import errors as codes
from protocol.messages import SUPPORTED_VERSIONS
from protocol.states import ACTIVE, ENDED, JobState, enum_items


def raw(header: dict) -> list[bytes]:
    return [msgpack.packb(header, use_bin_type=True)]


def test_the_states_are_their_wire_spelling_and_split_into_active_and_ended():
    assert [s.value for s in JobState] == ["queued", "running", "done", "failed", "cancelled"]
    assert ACTIVE | ENDED == set(JobState) and not ACTIVE & ENDED
    assert JobState.QUEUED.active and JobState.CANCELLED.ended and not JobState.DONE.active
    assert JobState.RUNNING == "running" and f"{JobState.FAILED}" == "failed"
    assert json.dumps({"state": JobState.DONE}) == '{"state": "done"}'
    assert msgpack.unpackb(msgpack.packb(JobState.DONE)) == "done"


def test_the_enum_items_suit_a_blender_enum_property():
    items = enum_items()
    assert [item[0] for item in items] == [s.value for s in JobState]
    assert all(len(item) == 3 and all(isinstance(text, str) and text for text in item) for item in items)


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
@pytest.mark.parametrize("state", [s.value for s in JobState])
def test_every_state_on_the_wire_decodes_to_the_enum(state, version):
    for header in (
        {"type": "job", "job_id": "a", "state": state, "position": 0},
        {"type": "accepted", "job_id": "a", "state": state, "position": 0},
    ):
        message, _ = p.decode(raw({**header, "v": version}), p.SERVER_MESSAGES)
        assert type(message.state) is JobState and message.state == state
    listing, _ = p.decode(
        raw({"type": "jobs", "v": version, "jobs": [{"job_id": "a", "state": state}]}), p.SERVER_MESSAGES
    )
    assert type(listing.jobs[0]["state"]) is JobState


def test_a_message_built_from_text_holds_the_enum_and_encodes_as_text():
    status = p.JobStatus(job_id="a", state="running", position=0)
    assert status.state is JobState.RUNNING
    assert msgpack.unpackb(p.encode(status)[0])["state"] == "running"


@pytest.mark.parametrize("kind", ["job", "accepted"])
def test_an_unknown_state_is_refused_naming_the_field(kind):
    with pytest.raises(p.ProtocolError) as error:
        p.decode(raw({"type": kind, "v": 3, "job_id": "a", "state": "exploded", "position": 0}), p.SERVER_MESSAGES)
    assert (error.value.code, error.value.field) == (codes.BAD_FIELD, "state")
    assert "field 'state' must be one of queued, running, done, failed, cancelled" in error.value.message


@pytest.mark.parametrize("state, shown", [("exploded", "'exploded'"), ([1], "'[1]'"), (7, "'7'")])
def test_an_unknown_state_in_a_job_list_is_refused_naming_the_entry(state, shown):
    with pytest.raises(p.ProtocolError) as error:
        p.decode(
            raw({"type": "jobs", "v": 3, "jobs": [{"job_id": "a", "state": "done"}, {"job_id": "b", "state": state}]}),
            p.SERVER_MESSAGES,
        )
    assert error.value.field == "jobs" and f"entry 2 has state {shown}, none of queued" in error.value.message
