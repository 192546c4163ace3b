import queue

import numpy as np
import pytest

from backend.jobs import JobStore
from backend.server import Server
from backend.worker import Worker
from flowmotion.tiny import build_tiny_pipeline
from flowmotion.video import frames_to_png_bytes
from protocol import Limits, Welcome
from protocol.client import BackendClient

# Few steps and a short prompt encoding keep a job near a second on the CPU; the backend's own
# defaults are the paper's.
FAST = {"num_inference_steps": 4, "guided_steps": 2, "optimization_steps": 1, "max_sequence_length": 16}
LONG = {
    "num_inference_steps": 1000,
    "guided_steps": 1000,
    "optimization_steps": 20,
    "reuse_velocity_across_iterations": False,
    "max_sequence_length": 16,
}
"""For jobs a test cancels: the most denoising steps the backend takes, each of them guided with 20
Adam iterations of two passes, about 44,000 passes in all, so minutes even on a fast CPU (plain
1000 steps took the tiny model seconds on a quiet machine, and a job could end before its test
cancelled it)."""
TIMEOUT = 60.0
"""A ceiling on every wait for the backend: a passing wait returns as soon as its message comes, and
on two busy cores a first guided step can take many seconds."""


@pytest.fixture(scope="session")
def pipe():
    return build_tiny_pipeline()


def playblast(frames: int = 5, height: int = 32, width: int = 48, shift: int = 0) -> list[bytes]:
    video = np.full((frames, height, width, 3), 30, np.uint8)
    for f in range(frames):
        x = (f * 6 + shift) % (width - 8)
        video[f, 8:16, x : x + 8] = 220
    return frames_to_png_bytes(video)


class Backend:
    """A live backend on a random loopback port, restartable on the same job store."""

    def __init__(
        self,
        pipe,
        root,
        limits: Limits | None = None,
        keys_folder=None,
        bind="tcp://127.0.0.1:*",
        insecure=False,
        **worker_options,
    ):
        self.pipe, self.root, self.limits = pipe, root, limits or Limits()
        self.worker_options = worker_options
        """Worker keywords (preview_every, ...) for every start."""
        self.keys_folder, self.bind, self.insecure = keys_folder, bind, insecure
        self.server = None
        self.clients: list[BackendClient] = []

    def restart(self) -> "Backend":
        """Stop and start again on the same address and job store, keeping this side's clients."""
        address = self.address
        self.server.stop()
        self.server.context.term()
        self.bind = address
        return self.start()

    def start(self) -> "Backend":
        store = JobStore(self.root)
        worker = Worker(self.pipe, store, queue.Queue(), **self.worker_options)
        self.server = Server(
            self.bind,
            store,
            worker,
            limits=self.limits,
            model_name="embedded",
            device="cpu",
            keys_folder=self.keys_folder,
            insecure=self.insecure,
        )
        self.server.start()
        return self

    @property
    def address(self) -> str:
        return self.server.address

    def client(self, address: str | None = None, **keys) -> BackendClient:
        client = BackendClient(address or self.address, connect_timeout=TIMEOUT, **keys).connect()
        self.clients.append(client)
        return client

    def stop(self) -> None:
        for client in self.clients:
            client.close()
        self.clients.clear()
        if self.server is not None:
            self.server.stop()
            self.server.context.term()
            self.server = None


@pytest.fixture
def backend(pipe, tmp_path):
    live = Backend(pipe, tmp_path / "jobs").start()
    yield live
    live.stop()


def welcomed(client: BackendClient) -> Welcome:
    return client.wait(lambda m: isinstance(m, Welcome), TIMEOUT)[0]
