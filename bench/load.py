"""Load benchmark: many artists polling one backend, quiet and beside a flooding client.

    python bench/load.py                    # 50 clients, 10 s quiet, 10 s with one flooder
    python bench/load.py --record           # the same, appended to bench/RESULTS.md

The backend runs in its own process (its message loop and job store; no model, no job runs), the
clients in a second one and the flooder in a third, all over loopback with raw pyzmq and msgpack.
Each client sends a `status` every 50 ms and waits for its answer (with a ping every second, as
the add-on does); the flooder sends 5000 `status` a second and never reads. Printed per run:
clients, requests answered, p50/p99/max latency, the longest gap between two heartbeats at any
client, and the flooder's messages sent and answered. A last row measures memory: a client that
never reads fetches a 3 MB take sixty times, and the backend's resident memory growth is printed
beside its bound (`max_unread_bytes`). Not a test: the numbers are the output.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import queue
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgpack
import numpy as np
import zmq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from protocol import JobState, Limits  # noqa: E402
from protocol.messages import PROTOCOL_VERSION  # noqa: E402

JOB = "shot010-take1"
FLOOD_RATE = 5000
REQUEST_EVERY = 0.05


def header(kind: str, **fields) -> bytes:
    return msgpack.packb({"type": kind, "v": PROTOCOL_VERSION, **fields})


def kind_of(parts: list[bytes]) -> str:
    return msgpack.unpackb(parts[0]).get("type", "")


# The backend ---------------------------------------------------------------------------------


def serve(jobs: Path, limits: Limits) -> None:
    """Run a backend whose store holds one finished job; print its address and pid; stop on stdin's end."""
    from backend.jobs import Job, JobStore
    from backend.server import Server
    from backend.worker import Worker
    from flowmotion.video import frames_to_png_bytes

    logging.getLogger("flowmotion.backend").setLevel(logging.ERROR)  # the refusals are the point here
    store = JobStore(jobs)
    rng = np.random.default_rng(0)
    source = frames_to_png_bytes(np.full((3, 32, 48, 3), 30, np.uint8))
    take = frames_to_png_bytes(rng.integers(0, 256, (4, 512, 512, 3), np.uint8))  # about 3 MB, uncompressible
    store.add(Job(job_id=JOB, prompt="a red ball rolls", frame_count=3, width=48, height=32), source)
    store.finish(store.next_job(), JobState.DONE, frames=take)
    server = Server("tcp://127.0.0.1:*", store, Worker(None, store, queue.Queue()), limits=limits)
    server.start()
    print(json.dumps({"address": server.address, "pid": os.getpid()}), flush=True)
    sys.stdin.read()
    server.stop()


# The clients ---------------------------------------------------------------------------------


def clients(address: str, count: int, seconds: float) -> None:
    """`count` clients in one thread; prints their latencies and heartbeat gaps as JSON."""
    context = zmq.Context()
    sockets = []
    for _ in range(count):
        socket = context.socket(zmq.DEALER)
        socket.setsockopt(zmq.LINGER, 0)
        socket.connect(address)
        socket.send(header("hello", client="bench"))
        sockets.append(socket)
    poller = zmq.Poller()
    for socket in sockets:
        poller.register(socket, zmq.POLLIN)
    state = {s: {"sent": None, "next": 0.0, "ping": 0.0, "beats": []} for s in sockets}
    latencies, refused = [], 0
    start = time.monotonic()
    warm = start + 1.0  # connections settle, the first heartbeats arrive
    while (now := time.monotonic()) < warm + seconds:
        for socket, st in state.items():
            if st["sent"] is None and now >= st["next"]:
                socket.send(header("status", job_id=JOB))
                st["sent"], st["next"] = now, max(st["next"] + REQUEST_EVERY, now)
            if now - st["ping"] >= 1.0:
                socket.send(header("ping"))
                st["ping"] = now
        for socket, _ in poller.poll(5):
            while socket.poll(0):
                parts = socket.recv_multipart()
                kind, now, st = kind_of(parts), time.monotonic(), state[socket]
                if kind == "heartbeat":
                    st["beats"].append(now)
                elif kind in ("job", "error") and st["sent"] is not None:
                    if now >= warm:
                        latencies.append(now - st["sent"])
                    refused += kind == "error"
                    st["sent"] = None
    gaps = [b - a for st in state.values() for a, b in zip(st["beats"], st["beats"][1:], strict=False) if a >= warm]
    print(json.dumps({"latencies": latencies, "gaps": gaps, "refused": refused}), flush=True)
    context.destroy(0)


def flooder(address: str, seconds: float) -> None:
    """One client sending FLOOD_RATE status requests a second and reading none of the answers."""
    context = zmq.Context()
    socket = context.socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.SNDHWM, 0)
    socket.connect(address)
    message, sent, start = header("status", job_id=JOB), 0, time.monotonic()
    while (elapsed := time.monotonic() - start) < seconds:
        while sent < elapsed * FLOOD_RATE:
            socket.send(message)
            sent += 1
        time.sleep(0.001)
    answered = 0
    while socket.poll(500):
        answered += kind_of(socket.recv_multipart()) == "job"
    print(json.dumps({"sent": sent, "answered": answered}), flush=True)
    context.destroy(0)


def greedy(address: str, pid: int) -> dict:
    """Sixty fetches of the 3 MB take from a client that reads nothing: the backend's growth."""
    context = zmq.Context()
    socket = context.socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.RCVHWM, 1)
    socket.setsockopt(zmq.RCVBUF, 4096)
    socket.connect(address)
    before = resident(pid)
    socket.send(header("list"))  # a first answer: the connection is up before the flood of fetches
    socket.poll(5000)
    socket.recv_multipart()
    for _ in range(60):
        socket.send(header("fetch", job_id=JOB))
    peak = before
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:  # the backend answers the sixty within this; watch its memory meanwhile
        peak = max(peak, resident(pid))
        time.sleep(0.05)
    results = refused = 0
    while results + refused < 60 and socket.poll(5000):
        kind = kind_of(socket.recv_multipart())
        results += kind == "result"
        refused += kind == "error"
    context.destroy(0)
    return {"grown": peak - before, "results": results, "refused": refused}


def resident(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# Running it ----------------------------------------------------------------------------------


def spawn(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(
        [sys.executable, __file__, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
    )


def run(address: str, count: int, seconds: float, flood: bool) -> dict:
    others = spawn("--role", "clients", "--address", address, "--clients", str(count), "--seconds", str(seconds))
    flooding = spawn("--role", "flooder", "--address", address, "--seconds", str(seconds + 1.0)) if flood else None
    figures = json.loads(others.communicate()[0])
    if flooding is not None:
        figures["flood"] = json.loads(flooding.communicate()[0])
    return figures


def row(name: str, count: int, figures: dict) -> str:
    latencies = np.array(figures["latencies"]) * 1000
    flood = figures.get("flood")
    flood_text = f"{flood['sent']} / {flood['answered']}" if flood else "-"
    gap = max(figures["gaps"], default=float("nan"))
    return (
        f"| {name} | {count} | {len(latencies)} | {figures['refused']} | {np.percentile(latencies, 50):.2f} | "
        f"{np.percentile(latencies, 99):.2f} | {latencies.max():.1f} | {gap:.2f} | {flood_text} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--record", action="store_true", help="append the table to bench/RESULTS.md")
    parser.add_argument(
        "--rate",
        type=int,
        default=Limits().max_messages_per_second,
        help="the backend's max_messages_per_second (a huge value: no rate limit)",
    )
    parser.add_argument("--role", choices=("serve", "clients", "flooder"), help=argparse.SUPPRESS)
    parser.add_argument("--address", help=argparse.SUPPRESS)
    parser.add_argument("--jobs", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "serve":
        return serve(Path(args.jobs), Limits(max_messages_per_second=args.rate))
    if args.role == "clients":
        return clients(args.address, args.clients, args.seconds)
    if args.role == "flooder":
        return flooder(args.address, args.seconds)

    with tempfile.TemporaryDirectory() as jobs:
        backend = spawn("--role", "serve", "--jobs", jobs, "--rate", str(args.rate))
        started = json.loads(backend.stdout.readline())
        try:
            quiet = run(started["address"], args.clients, args.seconds, flood=False)
            flooded = run(started["address"], args.clients, args.seconds, flood=True)
            memory = greedy(started["address"], started["pid"])
        finally:
            backend.stdin.close()
            backend.wait(30)
    p99 = [np.percentile(f["latencies"], 99) for f in (quiet, flooded)]
    limits = Limits(max_messages_per_second=args.rate)
    lines = [
        f"### {datetime.date.today()}, load: {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, pyzmq {zmq.__version__} (libzmq {zmq.zmq_version()}); "
        f"each client asks every {REQUEST_EVERY * 1000:.0f} ms for {args.seconds:g} s; the flooder sends "
        f"{FLOOD_RATE}/s; max_messages_per_second {limits.max_messages_per_second}",
        "",
        "| run | clients | answers | refused | p50 ms | p99 ms | max ms | longest heartbeat gap s "
        "| flooder sent / answered |",
        "|---|---|---|---|---|---|---|---|---|",
        row("quiet", args.clients, quiet),
        row("one flooder", args.clients, flooded),
        "",
        f"p99 with the flooder / quiet: {p99[1] / p99[0]:.2f}. A client that never reads, 60 fetches of a "
        f"3 MB take: the backend grew by {memory['grown'] / 2**20:.1f} MiB (bound max_unread_bytes "
        f"{limits.max_unread_bytes / 2**20:.0f} MiB + 4 MiB of small replies); {memory['results']} results "
        f"sent, {memory['refused']} refused with unread_limit.",
        "",
    ]
    print("\n".join(lines))
    if args.record:
        with open(Path(__file__).with_name("RESULTS.md"), "a") as results:
            results.write("\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
