"""`flowmotion-backend`: serve FlowMotion jobs over ZeroMQ, make keys, and talk to a running backend.

flowmotion-backend serve [--bind tcp://127.0.0.1:5599] [--model embedded|FOLDER|HUB_ID] [--device cuda]
flowmotion-backend keys --dir KEYS [--client NAME]
flowmotion-backend submit FRAMES_FOLDER --prompt "..." [--job-id ID] [--wait]
flowmotion-backend status|cancel|fetch JOB_ID ;  flowmotion-backend list
"""

from __future__ import annotations

import argparse
import logging
import os
import queue
import re
import shutil
import signal
import sys
import threading
import uuid
from pathlib import Path

from flowmotion import FlowMotionError, durable
from flowmotion.loading import EMBEDDED_MAX_AREA
from protocol import Accepted, JobList, JobState, JobStatus, Limits, Progress, ProtocolError, Result, Welcome
from protocol.client import BackendClient

from .errors import BackendError
from .previews import PREVIEW_EVERY

DEFAULT_BIND = "tcp://127.0.0.1:5599"
DEFAULT_STORE = Path(os.environ.get("FLOWMOTION_JOBS", Path.home() / ".cache" / "flowmotion" / "jobs"))


def add_limit_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = Limits()
    for name in defaults.to_dict():
        parser.add_argument(
            "--" + name.replace("_", "-"),
            type=int,
            default=getattr(defaults, name),
            help=f"(default: {getattr(defaults, name)})",
        )


def seconds(text: str) -> float:
    """A span of seconds on the command line: a finite number, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds (0 or more)")
    return value


def setting(text: str) -> tuple[str, bool | int | float | str]:
    """NAME=VALUE, the value read as a boolean, an integer, a number or else text."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE")
    if value.lower() in ("true", "false"):
        return name, value.lower() == "true"
    for kind in (int, float):
        try:
            return name, kind(value)
        except ValueError:
            pass
    return name, value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flowmotion-backend", description="FlowMotion job server and client.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the job server")
    serve.add_argument("--bind", default=DEFAULT_BIND, help=f"ZeroMQ address to listen on (default: {DEFAULT_BIND})")
    serve.add_argument("--model", default="embedded", help="'embedded', a local diffusers folder or a hub id")
    serve.add_argument("--device", default=None, help="cuda, cuda:1 or cpu (default: cuda when present)")
    serve.add_argument("--jobs", type=Path, default=DEFAULT_STORE, help=f"job store folder (default: {DEFAULT_STORE})")
    serve.add_argument("--expire-days", type=float, default=7.0, help="days a finished job stays fetchable")
    serve.add_argument(
        "--keys",
        type=Path,
        default=None,
        help="CurveZMQ keys folder (from `keys`); required off loopback unless --insecure",
    )
    serve.add_argument("--insecure", action="store_true", help="serve off loopback without keys")
    serve.add_argument(
        "--share-prompts",
        action="store_true",
        help="with --keys: show every artist the prompts of others' jobs (default: only their own)",
    )
    serve.add_argument(
        "--max-area",
        type=int,
        default=None,
        help="most pixels per frame the model works at (default: no cap, or the embedded model's "
        f"training area, {EMBEDDED_MAX_AREA})",
    )
    serve.add_argument(
        "--preview-every",
        type=seconds,
        default=PREVIEW_EVERY,
        metavar="SECONDS",
        help="least seconds between two live previews of a job, sent to artists who follow it "
        f"(default: {PREVIEW_EVERY:g}; 0: every denoising step)",
    )
    serve.add_argument("--no-previews", action="store_true", help="send no live previews")
    add_limit_arguments(serve)

    keys = commands.add_parser("keys", help="create a CurveZMQ key pair (the server's, or an artist's)")
    keys.add_argument("--dir", type=Path, required=True)
    keys.add_argument("--client", default=None, help="make a client key pair with this name instead")
    keys.add_argument("--admin", action="store_true", help="with --client: this key may cancel any artist's job")

    for name, text in (("status", "a job's state"), ("cancel", "cancel a job"), ("fetch", "save a job's frames")):
        command = commands.add_parser(name, help=text)
        command.add_argument("job_id")
        if name == "fetch":
            command.add_argument("--out", type=Path, required=True, help="folder for the PNG frames")
    submit = commands.add_parser("submit", help="send a folder of PNG frames as a job")
    submit.add_argument("frames", type=Path)
    submit.add_argument("--prompt", required=True)
    submit.add_argument(
        "--subject-masks",
        type=Path,
        default=None,
        metavar="FOLDER",
        help="a PNG per frame, white where the shot's subjects are: adds Subject Alignment",
    )
    submit.add_argument("--negative-prompt", default="")
    submit.add_argument("--seed", type=int, default=0)
    submit.add_argument("--shot", default="", help="the shot's name, kept with the job")
    submit.add_argument("--fps", type=float, default=24.0)
    submit.add_argument(
        "--set",
        dest="settings",
        metavar="NAME=VALUE",
        action="append",
        type=setting,
        default=[],
        help="a FlowMotion setting for this job, e.g. --set guided_steps=5 (repeatable)",
    )
    submit.add_argument("--job-id", default=None, help="default: a new random id")
    submit.add_argument("--wait", action="store_true", help="show progress until the job ends")
    commands.add_parser("list", help="every job the backend holds")
    for command in (submit, *(commands.choices[n] for n in ("status", "cancel", "fetch", "list"))):
        command.add_argument("--address", default=DEFAULT_BIND.replace("*", "127.0.0.1"))
        command.add_argument("--server-key", default=None, help="the server's public key, for a secured backend")
        command.add_argument("--client-keys", type=Path, default=None, help="this client's .key_secret file")
        command.add_argument("--timeout", type=float, default=10.0)
    return parser


def serve(args) -> int:
    from .lock import StoreLock
    from .security import check_bind

    check_bind(args.bind, args.keys, args.insecure)  # before the minutes a real model takes to load
    # Held until this process ends: a second backend on the same store would run the same jobs.
    lock = StoreLock(args.jobs).acquire()
    try:
        return run_backend(args)
    finally:
        lock.release()


def run_backend(args) -> int:
    import flowmotion
    from flowmotion.cache import TransferCache

    from .jobs import JobStore
    from .server import Server
    from .worker import Worker

    # Installed first, so that a stop asked for while the model loads still ends in a clean shutdown.
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    limits = Limits(**{name: getattr(args, name) for name in Limits().to_dict()})
    store = JobStore(args.jobs, expire_after=args.expire_days * 86400)
    device = args.device or flowmotion.loading.default_device()
    model_note = (
        " (the embedded model; --model Wan-AI/Wan2.1-T2V-1.3B-Diffusers for the real one)"
        if args.model == flowmotion.EMBEDDED_MODEL
        else ""
    )
    print(f"loading {args.model}{model_note} on {device}...", flush=True)
    pipe = flowmotion.load_pipeline(args.model, device=device)
    # The job store's lock, held since before the store was opened, makes this backend its cache's sole writer.
    worker = Worker(
        pipe,
        store,
        queue.Queue(),
        cache=TransferCache(args.jobs / ".source-cache", sole_writer=True),
        max_area=flowmotion.loading.max_area_for(args.model, args.max_area),
        preview_every=None if args.no_previews else args.preview_every,
    )
    server = Server(
        args.bind,
        store,
        worker,
        limits=limits,
        model_name=args.model,
        device=device,
        keys_folder=args.keys,
        insecure=args.insecure,
        share_prompts=args.share_prompts,
    )
    address = server.open()
    print(
        f"serving {args.model} on {device} at {address}; jobs in {args.jobs} ({len(store.queue)} queued from before)",
        flush=True,
    )
    if server.public_key and server.allow_list is not None:
        print(f"server public key (for the add-on's preferences): {server.public_key}", flush=True)
        print(
            f"allowed client keys: {server.allow_list.allowed()} in {args.keys / 'allowed_clients'} "
            "(copy an artist's .key file there to let them in)",
            flush=True,
        )
    elif args.insecure:
        print("WARNING: serving without encryption or authentication", flush=True)
    server.start()
    while not stop.wait(0.5):
        pass
    print("stopping: queued and running jobs resume at the next start", flush=True)
    server.stop()
    return 0


def make_keys(args) -> int:
    from .security import ALLOWED_CLIENTS, SERVER_KEY_NAME, create_key_pair, public_key_text

    name = args.client or SERVER_KEY_NAME
    public, secret = create_key_pair(args.dir, name, admin=bool(args.client) and args.admin)
    if args.client is None:
        (args.dir / ALLOWED_CLIENTS).mkdir(exist_ok=True)
    print(f"public key {public_key_text(public)}\nwrote {public} and {secret} (secret, mode 600)")
    if args.client:
        print(f"allow it on the backend: copy {public.name} into the server's KEYS/{ALLOWED_CLIENTS}/")
    return 0


def connect(args) -> BackendClient:
    import zmq.auth

    public = secret = None
    if args.client_keys:
        public, secret = zmq.auth.load_certificate(args.client_keys)
    client = BackendClient(
        args.address,
        server_public_key=args.server_key,
        client_public_key=public,
        client_secret_key=secret,
        connect_timeout=args.timeout,
        name="flowmotion-backend-cli",
    )
    client.connect()
    client.wait(lambda m: isinstance(m, Welcome), args.timeout)
    return client


def describe(status: JobStatus) -> str:
    where = f", position {status.position} in the queue" if status.state == JobState.QUEUED else ""
    why = f": {status.message}" if status.message else ""
    return f"{status.job_id}: {status.state}{where}{why}"


def talk(args) -> int:
    client = connect(args)
    try:
        if args.command == "submit":
            return submit(client, args)
        if args.command == "list":
            client.list_jobs()
            jobs, _ = client.wait(lambda m: isinstance(m, JobList), args.timeout)
            assert isinstance(jobs, JobList)
            for job in jobs.jobs:
                print(describe(JobStatus(**job)), "-", job["prompt"])
            return 0
        if args.command == "status":
            client.status(args.job_id)
        elif args.command == "cancel":
            client.cancel(args.job_id)
        else:
            client.fetch(args.job_id)
            result, frames = client.wait(lambda m: isinstance(m, Result), args.timeout)
            assert isinstance(result, Result)
            save_frames(args.out, frames)
            print(f"wrote {len(frames)} frames ({result.width}x{result.height}) to {args.out}")
            return 0
        reply, _ = client.wait(lambda m: isinstance(m, (JobStatus, Accepted)), args.timeout)
        assert isinstance(reply, (JobStatus, Accepted))
        print(describe(reply) if isinstance(reply, JobStatus) else f"{reply.job_id}: {reply.state}")
        return 0
    finally:
        client.close()


def save_frames(out: Path, frames: list[bytes]) -> None:
    """A fetched take's frames into `out`, whole or not at all; an earlier fetch there is replaced,
    a folder holding anything else is refused before it is touched."""
    if out.is_dir():
        foreign = sorted(p.name for p in out.iterdir() if not re.fullmatch(r"frame_\d+\.png", p.name))
        if foreign:
            raise BackendError(
                f"{out} already holds other files ({', '.join(foreign[:3])}); fetch into an empty or new folder"
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    with durable.staged_folder(out) as staging:
        for number, frame in enumerate(frames, start=1):
            (staging / f"frame_{number:04d}.png").write_bytes(frame)
        if out.exists():
            shutil.rmtree(out)


def submit(client: BackendClient, args) -> int:
    frames = [p.read_bytes() for p in sorted(args.frames.glob("*.png"))]
    if not frames:
        raise BackendError(f"{args.frames} holds no PNG frames")
    masks = [p.read_bytes() for p in sorted(args.subject_masks.glob("*.png"))] if args.subject_masks else []
    if args.subject_masks and len(masks) != len(frames):
        raise BackendError(
            f"{args.subject_masks} holds {len(masks)} PNG masks but {args.frames} holds {len(frames)} "
            "frames: send one mask per frame"
        )
    job_id = args.job_id or uuid.uuid4().hex[:12]
    client.submit(
        job_id,
        frames,
        args.prompt,
        masks=masks,
        negative_prompt=args.negative_prompt,
        seed=args.seed,
        shot=args.shot,
        fps=args.fps,
        settings=dict(args.settings),
    )
    accepted, _ = client.wait(lambda m: isinstance(m, Accepted), args.timeout)
    assert isinstance(accepted, Accepted)
    print(f"{job_id}: {accepted.state}, position {accepted.position}", flush=True)
    while args.wait:
        message, _ = client.wait(lambda m: isinstance(m, (Progress, JobStatus)), 3600)
        if isinstance(message, Progress):
            eta = f", about {message.eta:.0f} s left" if message.eta is not None else ""
            print(f"\r{message.phase} step {message.step}/{message.total}{eta}    ", end="", flush=True)
        elif isinstance(message, JobStatus) and message.state.ended:
            print("\n" + describe(message))
            return 0 if message.state == JobState.DONE else 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            return serve(args)
        if args.command == "keys":
            return make_keys(args)
        return talk(args)
    except (BackendError, ProtocolError, FlowMotionError) as error:
        print(f"flowmotion-backend: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
