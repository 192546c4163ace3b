"""One backend per job store: a lock file held for the whole life of the `serve` process.

The lock is the operating system's (flock on Linux and macOS, a byte-range lock on Windows), so it
goes with the process however that ends, kill -9 included: a lock file left behind by a dead
backend is never in the way. The file also names its holder, for the message a second backend
prints when it refuses to start.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import TextIO

from .errors import BackendError

LOCK_NAME = ".lock"
_WINDOWS_LOCK_OFFSET = 2**20
"""Windows locks bytes, and a locked byte cannot be read: lock one far past the holder's note."""

if sys.platform == "win32":
    import msvcrt
else:
    import fcntl


class StoreLock:
    """Held from `acquire` until `release` or the end of the process."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.path = self.root / LOCK_NAME
        self.handle: TextIO | None = None

    def acquire(self) -> StoreLock:
        """Take the lock, or BackendError naming the backend that holds it."""
        self.root.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")
        try:
            _lock(handle)
        except OSError:
            handle.close()
            raise BackendError(
                f"the job store {self.root} is in use by another backend ({self.holder()}); stop "
                "that one first, or give this one a job store of its own with --jobs"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}))
        handle.flush()
        self.handle = handle
        return self

    def release(self) -> None:
        if self.handle is not None:
            self.handle.close()  # closing the file lets go of the lock
            self.handle = None

    def holder(self) -> str:
        """The holder's process id, host and start time, in words, as it wrote them."""
        try:
            note = json.loads(self.path.read_text(encoding="utf-8"))
            started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(note["started"])))
            return f"process {int(note['pid'])} on {str(note['host'])[:100]}, started {started}"
        except (OSError, ValueError, TypeError, KeyError, OverflowError):
            return f"its process has not written its name in {self.path} yet"


def _lock(handle) -> None:
    if sys.platform == "win32":
        handle.seek(_WINDOWS_LOCK_OFFSET)
        msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
    else:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
