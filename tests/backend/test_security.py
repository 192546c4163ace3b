import stat

import pytest
import zmq.auth

from backend.cli import main
from backend.errors import BackendError
from backend.security import create_key_pair, is_loopback
from protocol import Welcome
from protocol.errors import UNREACHABLE, ProtocolError
from protocol.states import JobState
from tests.waiting import WatchedContext, wait_until

from .conftest import FAST, TIMEOUT, Backend, playblast


@pytest.mark.parametrize(
    "address, local",
    [
        ("tcp://127.0.0.1:5599", True),
        ("tcp://localhost:5599", True),
        ("tcp://[::1]:5599", True),
        ("tcp://127.4.5.6:1", True),
        ("ipc:///tmp/flowmotion", True),
        ("inproc://x", True),
        ("tcp://0.0.0.0:5599", False),
        ("tcp://*:5599", False),
        ("tcp://192.168.1.20:5599", False),
        ("tcp://eth0:5599", False),
        ("tcp://render-box:5599", False),
    ],
)
def test_loopback_detection(address, local):
    assert is_loopback(address) is local


@pytest.fixture
def keys(tmp_path):
    folder = tmp_path / "keys"
    assert main(["keys", "--dir", str(folder)]) == 0
    public, secret = create_key_pair(tmp_path / "artist", "artist")
    (folder / "allowed_clients" / public.name).write_bytes(public.read_bytes())
    return folder, public, secret


def test_key_files_keep_the_secret_private(keys):
    folder, _, secret = keys
    for private in (folder / "server.key_secret", secret):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600


def test_allowed_client_works_and_unknown_key_gets_nothing(pipe, tmp_path, keys):
    folder, public, secret = keys
    live = Backend(pipe, tmp_path / "jobs", keys_folder=folder).start()
    try:
        server_key = live.server.public_key
        assert server_key and len(server_key) == 40
        artist_public, artist_secret = zmq.auth.load_certificate(secret)
        allowed = live.client(
            server_public_key=server_key, client_public_key=artist_public, client_secret_key=artist_secret
        )
        assert allowed.wait(lambda m: isinstance(m, Welcome), TIMEOUT)[0].secure
        allowed.submit("secure-job", playblast(), "a ball", settings=FAST)
        allowed.wait(lambda m: getattr(m, "state", None) == JobState.DONE, TIMEOUT)

        stranger_public, stranger_secret = zmq.curve_keypair()
        watched = [WatchedContext(), WatchedContext()]
        stranger = refused_client(
            live,
            server_public_key=server_key,
            client_public_key=stranger_public,
            client_secret_key=stranger_secret,
            context=watched[0],
        )
        plain = refused_client(live, context=watched[1])
        # The backend's refusals themselves: its allow list turns the unknown key away, and a client
        # without encryption cannot even agree on a handshake.
        assert watched[0].next_event(TIMEOUT) == zmq.EVENT_HANDSHAKE_FAILED_AUTH
        assert watched[1].next_event(TIMEOUT) != zmq.EVENT_HANDSHAKE_SUCCEEDED
        for client in (stranger, plain):
            assert client is None or (client.poll() == [] and client.welcome is None)
    finally:
        live.stop()
        for context in watched:
            context.close()


def refused_client(live, **options):
    """A client the backend turns away: the client itself, or None where the refusal came before
    its hello could be queued (then connecting fails as unreachable, which is as good a refusal)."""
    try:
        return live.client(**options)
    except ProtocolError as error:
        assert error.code == UNREACHABLE
        return None


def test_a_non_loopback_bind_without_keys_is_refused(pipe, tmp_path):
    live = Backend(pipe, tmp_path / "jobs", bind="tcp://0.0.0.0:*")
    with pytest.raises(BackendError, match="--insecure"):
        live.start()
    live.server.worker.stop()


def test_insecure_must_be_explicit_and_then_serves(pipe, tmp_path):
    live = Backend(pipe, tmp_path / "jobs", bind="tcp://0.0.0.0:*", insecure=True).start()
    try:
        port = live.address.rsplit(":", 1)[1]
        client = live.client(address=f"tcp://127.0.0.1:{port}")
        assert not client.wait(lambda m: isinstance(m, Welcome), TIMEOUT)[0].secure
    finally:
        live.stop()


def test_serve_refuses_missing_keys_folder(tmp_path, capsys):
    code = main(
        ["serve", "--bind", "tcp://0.0.0.0:5599", "--keys", str(tmp_path / "none"), "--jobs", str(tmp_path / "jobs")]
    )
    assert code == 2 and "no server key pair" in capsys.readouterr().err


def test_keys_never_replace_an_existing_pair(keys, capsys):
    folder, _, _ = keys
    before = (folder / "server.key_secret").read_bytes()
    assert main(["keys", "--dir", str(folder)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (folder / "server.key_secret").read_bytes() == before


def test_an_artist_added_to_the_allow_list_gets_in_without_a_restart(pipe, tmp_path, monkeypatch):
    from backend import server as server_module

    monkeypatch.setattr(server_module, "ALLOW_LIST_EVERY", 0.2)
    folder = tmp_path / "keys"
    assert main(["keys", "--dir", str(folder)]) == 0
    live = Backend(pipe, tmp_path / "jobs", keys_folder=folder).start()
    try:
        public, secret = create_key_pair(tmp_path / "artist", "late")
        artist_public, artist_secret = zmq.auth.load_certificate(secret)
        keys = {
            "server_public_key": live.server.public_key,
            "client_public_key": artist_public,
            "client_secret_key": artist_secret,
        }
        watched = WatchedContext()
        refused = refused_client(live, context=watched, **keys)
        assert watched.next_event(TIMEOUT) == zmq.EVENT_HANDSHAKE_FAILED_AUTH
        watched.close()
        assert refused is None or (refused.poll() == [] and refused.welcome is None)
        (folder / "allowed_clients" / public.name).write_bytes(public.read_bytes())
        wait_until(lambda: live.server.allow_list.allowed() >= 1, TIMEOUT, "the allow list to be read again")
        assert live.server.allow_list.allowed() == 1
        admitted = live.client(**keys)
        assert admitted.wait(lambda m: isinstance(m, Welcome), TIMEOUT)[0].secure
    finally:
        live.stop()
