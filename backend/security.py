"""CurveZMQ for the studio network: key pairs, and the allow-list of client keys.

Loopback needs no keys. Any other address needs the server's key pair and a folder of allowed
client public keys, enforced by a ZAP authenticator, unless the operator says --insecure. A key
file whose metadata says `role = admin` marks a key that may cancel any artist's job.
"""

from __future__ import annotations

import ipaddress
import os
import stat
from pathlib import Path
from urllib.parse import urlsplit

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from flowmotion import durable

from .errors import BackendError

SERVER_KEY_NAME = "server"
ALLOWED_CLIENTS = "allowed_clients"
ADMIN_ROLE = "admin"


def is_loopback(address: str) -> bool:
    """True for ipc://, inproc:// and tcp:// on 127.0.0.0/8, ::1 or localhost."""
    scheme = address.split("://", 1)[0]
    if scheme in ("ipc", "inproc"):
        return True
    if scheme != "tcp":
        return False
    host = urlsplit(address).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # '*', an interface name or a host name: reachable from elsewhere


def check_bind(address: str, keys_folder, insecure: bool) -> None:
    """Refuse to serve an address other machines can reach without keys, unless told --insecure."""
    if keys_folder is not None:
        load_server_keys(keys_folder)
    elif not is_loopback(address) and not insecure:
        raise BackendError(
            f"{address} is reachable from other machines: create keys with `flowmotion-backend keys --dir KEYS` "
            "and pass --keys KEYS (then add each artist's public key to KEYS/allowed_clients), or pass "
            "--insecure to serve without encryption or authentication"
        )


def create_key_pair(folder: str | os.PathLike, name: str, admin: bool = False) -> tuple[Path, Path]:
    """Write NAME.key (public) and NAME.key_secret (mode 600) into `folder`; returns both paths.
    With `admin`, the key files say `role = admin`: copied into allowed_clients, that key may
    cancel any artist's job.

    An existing pair is never replaced: every artist who entered its public key would be locked out.
    """
    folder = Path(folder)
    public, secret = folder / f"{name}.key", folder / f"{name}.key_secret"
    for existing in (public, secret):
        if existing.exists():
            raise BackendError(f"{existing} already exists; keep it, or delete the pair yourself to make a new one")
    folder.mkdir(parents=True, exist_ok=True)
    # The secret file is private from its first byte, not only after a chmod.
    previous = os.umask(0o077)
    try:
        zmq.auth.create_certificates(folder, name)
    finally:
        os.umask(previous)
    if admin:  # in the public file: that is the one copied into allowed_clients
        for key_file, mode in ((public, 0o644), (secret, stat.S_IRUSR | stat.S_IWUSR)):
            text = key_file.read_text(encoding="utf-8")
            marked = text.replace("metadata\n", f'metadata\n    role = "{ADMIN_ROLE}"\n', 1)
            durable.write_text(key_file, marked, mode=mode)  # a crash never leaves half a key
    public.chmod(0o644)
    secret.chmod(stat.S_IRUSR | stat.S_IWUSR)
    return public, secret


def public_key_text(public_file: str | os.PathLike) -> str:
    public, _ = zmq.auth.load_certificate(public_file)
    return public.decode("ascii")


def key_role(key_file: str | os.PathLike) -> str:
    """The `role` in a key file's metadata section ('' when it has none)."""
    section = ""
    for line in Path(key_file).read_text(encoding="utf-8", errors="replace").splitlines():
        text = line.split("#", 1)[0].rstrip()
        if text and not text[0].isspace():
            section = text.strip()
        elif section == "metadata" and "=" in text:
            name, value = (part.strip().strip("\"'") for part in text.split("=", 1))
            if name == "role":
                return value
    return ""


def load_server_keys(folder: str | os.PathLike) -> tuple[bytes, bytes]:
    secret_file = Path(folder) / f"{SERVER_KEY_NAME}.key_secret"
    if not secret_file.is_file():
        raise BackendError(f"no server key pair in {folder}: create one with `flowmotion-backend keys --dir {folder}`")
    public, secret = zmq.auth.load_certificate(secret_file)
    if secret is None:
        raise BackendError(f"{secret_file} holds no secret key")
    return public, secret


class AllowList:
    """The ZAP authenticator on the server's context, admitting the client keys in one folder.

    `refresh` re-reads the folder when it changed, so an artist's key copied in (or removed) takes
    effect within seconds; a removed key keeps a connection it already has until it reconnects.
    """

    def __init__(self, context: zmq.Context, folder: Path):
        self.folder = folder
        self.authenticator = ThreadAuthenticator(context)
        self.authenticator.start()
        self.seen: tuple | None = None
        self.admins: frozenset[str] = frozenset()
        """Public keys (Z85 text, as ZeroMQ names a client) whose key file says `role = admin`."""
        self.refresh()

    def state(self) -> tuple:
        try:
            return tuple(sorted((entry.name, entry.stat().st_mtime_ns) for entry in os.scandir(self.folder)))
        except OSError:
            return ()

    def refresh(self) -> None:
        state = self.state()
        if state != self.seen:
            self.authenticator.configure_curve(domain="*", location=str(self.folder))
            self.admins = frozenset(self.read_admins())
            self.seen = state

    def read_admins(self):
        for key_file in self.folder.glob("*.key"):
            try:
                if key_role(key_file) == ADMIN_ROLE:
                    yield public_key_text(key_file)
            except (OSError, ValueError):
                continue  # a broken key file lets nobody in, and makes nobody admin

    def allowed(self) -> int:
        return len(self.authenticator.certs.get("*", {}))

    def stop(self) -> None:
        self.authenticator.stop()


def secure_socket(socket: zmq.Socket, keys_folder: str | os.PathLike) -> tuple[AllowList, str]:
    """Make `socket` a CurveZMQ server that admits only the allowed client keys; returns the
    running allow-list and the server's public key (for the add-on's preferences)."""
    public, secret = load_server_keys(keys_folder)
    allowed = Path(keys_folder) / ALLOWED_CLIENTS
    allowed.mkdir(exist_ok=True)
    allow_list = AllowList(socket.context, allowed)
    socket.curve_secretkey = secret
    socket.curve_publickey = public
    socket.curve_server = True
    return allow_list, public.decode("ascii")
