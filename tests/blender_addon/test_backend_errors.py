"""What the artist sees when the backend will not talk: a key it does not allow, another protocol."""

import stat
from pathlib import Path

import pytest

from backend.cli import main as backend_main

from .conftest import run_blender


@pytest.fixture
def secured_backend(tmp_path):
    from flowmotion.tiny import build_tiny_pipeline
    from tests.backend.conftest import Backend

    keys = tmp_path / "server-keys"
    assert backend_main(["keys", "--dir", str(keys)]) == 0
    backend = Backend(build_tiny_pipeline(), tmp_path / "jobs", keys_folder=keys).start()
    yield backend, keys / "allowed_clients"
    backend.stop()


def test_a_key_made_in_one_click_is_refused_until_allowed(addon_zips, secured_backend, tmp_path):
    backend, allowed = secured_backend
    user = tmp_path / "user"
    user.mkdir()
    report = run_blender(
        "secured",
        {
            "zip": str(addon_zips["py311"]),
            "address": backend.address,
            "server_key": backend.server.public_key,
            "allowed": str(allowed),
            "timeout": 1.0,
        },
        user,
    )
    assert report["keys"] == ["FINISHED"] and len(report["public_key"]) == 40
    assert Path(report["key_folder"]).is_relative_to(user / "extensions")
    assert stat.S_IMODE(report["secret_mode"]) == 0o600
    assert "did not answer within 1 s" in report["refused_error"] and "server key" in report["refused_error"]
    assert report["admitted"] and report["secure"] is True
    assert report["takes"][-1]["state"] == "imported" and report["strips"][0]["elements"] == 9


def test_a_protocol_version_mismatch_is_named_in_the_take(addon_zips, live_backend, tmp_path):
    report = run_blender(
        "version_mismatch", {"zip": str(addon_zips["py311"]), "address": live_backend.address, "timeout": 1.0}, tmp_path
    )
    assert report["generate"] == ["FINISHED"]
    message = report["takes"][-1]["message"]
    assert "protocol version" in message and "same FlowMotion release" in message, message
    assert "protocol version" in report["error"]
    assert report["strips"] == []


@pytest.fixture
def small_backend(tmp_path):
    from flowmotion.tiny import build_tiny_pipeline
    from protocol import Limits
    from tests.backend.conftest import Backend

    backend = Backend(build_tiny_pipeline(), tmp_path / "jobs", limits=Limits(max_width=64)).start()
    yield backend
    backend.stop()


def test_a_backend_with_smaller_limits_gets_the_shot_scaled_to_fit(addon_zips, small_backend, tmp_path):
    user = tmp_path / "user"
    user.mkdir()
    report = run_blender("generate", {"zip": str(addon_zips["py311"]), "address": small_backend.address}, user)
    take = report["takes"][-1]
    assert take["state"] == "imported", take
    assert report["strips"][0]["size"] == [64, 35] and report["render_settings_kept"]  # 72x40 within 64 wide
