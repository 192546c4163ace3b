"""A job's settings are checked at submit: every FlowMotionConfig field by its type, every integer by its range."""

import pytest

from backend.settings import INTEGER_RANGES, check_settings, setting_kinds
from protocol import ProtocolError
from protocol import errors as codes

from .conftest import TIMEOUT, playblast
from .test_server import error_reply

WRONG_KIND = {bool: ("no", 1, None), int: (2.5, True, "3"), float: ("fast", False, float("nan")), str: (5, None)}


def refusal(settings: dict) -> str:
    with pytest.raises(ProtocolError) as caught:
        check_settings(settings)
    assert (caught.value.code, caught.value.field) == (codes.BAD_FIELD, "settings")
    return caught.value.message


def test_every_setting_of_the_config_is_checked_by_its_kind():
    kinds = setting_kinds()
    assert {"num_inference_steps", "motion_guidance", "learning_rate", "source_motion"} <= set(kinds)
    for name, kind in kinds.items():
        assert kind in WRONG_KIND, f"{name} has a type the backend cannot check"
        for value in WRONG_KIND[kind]:
            assert name in refusal({name: value})


def test_every_integer_setting_has_a_range_and_its_ends_are_what_it_says():
    integers = [name for name, kind in setting_kinds().items() if kind is int]
    assert set(integers) == set(INTEGER_RANGES)
    for name in integers:
        low, high = INTEGER_RANGES[name]
        room = {"guided_steps": {"num_inference_steps": 1000}, "num_inference_steps": {"guided_steps": 0}}.get(name, {})
        for value in (low, high):
            assert getattr(check_settings({**room, name: value}), name) == value
        for value in (low - 1, high + 1):
            assert f"{name} must be an integer from {low} to {high}, got {value}" in refusal({**room, name: value})


def test_the_configs_own_rules_apply_and_name_the_setting():
    assert "guided_steps (60) cannot exceed num_inference_steps (50)" in refusal({"guided_steps": 60})
    assert "learning_rate must be positive" in refusal({"learning_rate": -1.0})
    assert "source_motion" in refusal({"source_motion": "noisy"})
    assert "unknown setting 'warp_factor'; the settings are batch_guidance," in refusal({"warp_factor": 9})
    config = check_settings({"guided_steps": 5, "motion_guidance": False, "learning_rate": 1})
    # The backend runs optimized(): CFG batching is left to the run's plan, the velocity is reused.
    assert (
        config.guided_steps,
        config.motion_guidance,
        config.batch_guidance,
        config.reuse_velocity_across_iterations,
    ) == (5, False, None, True)


@pytest.mark.parametrize(
    "settings, says",
    [
        ({"num_inference_steps": 2.5}, "num_inference_steps must be an integer from 1 to 1000, got 2.5"),
        ({"motion_guidance": "no"}, "motion_guidance must be true or false, got 'no'"),
        ({"max_sequence_length": 10**12}, "max_sequence_length must be an integer from 1 to 512, got 1000000000000"),
        ({"num_inference_steps": 10**9}, "num_inference_steps must be an integer from 1 to 1000"),
        ({"optimization_steps": 10**6}, "optimization_steps must be an integer from 0 to 100"),
        ({"difference_alignment": 0}, "difference_alignment must be true or false, got 0"),
    ],
)
def test_a_live_backend_refuses_bad_settings_at_submit_and_stores_nothing(backend, settings, says):
    client = backend.client()
    client.submit("bad", playblast(), "a ball", settings=settings)
    error = error_reply(client)
    assert (error.code, error.field, error.job_id) == (codes.BAD_FIELD, "settings", "bad")
    assert says in error.message
    assert backend.server.store.get("bad") is None and not (backend.root / "bad").exists()
    client.list_jobs()
    assert client.wait(lambda m: getattr(m, "total", None) == 0, TIMEOUT)
