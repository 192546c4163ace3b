"""Crash safety of the job store's manifest writes, and what the syncing costs.

    python bench/crash_writes.py [--kills 40] [--saves 200]

Kills: a child process saves one job's manifest in a loop (its message a different length each
time) and is SIGKILLed after a random number of saves, while it goes on writing; the store is then
opened as the next start would. It counts the kills that found a write under way (a staging file
left behind) and the manifests that were torn (the job set aside, or its message not one written
whole). Cost: seconds per manifest save through `flowmotion.durable` (fsync of file and folder) against a
plain write of the same text, on this machine's disk.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend import jobs  # noqa: E402
from backend.jobs import Job, JobStore  # noqa: E402

SAVE_FOREVER = """
import sys
from backend.jobs import JobStore
store = JobStore(sys.argv[1])
job = store.get("j")
for number in range(1, 10**9):
    job.message = f"save {number} " + "x" * (number * 7919 % 300_000)
    store.save(job)
    print(number, flush=True)
"""


def whole(message: str) -> bool:
    number = int(message.split()[1])
    return message == f"save {number} " + "x" * (number * 7919 % 300_000)


def kills(rounds: int) -> tuple[int, int]:
    under_way = torn = 0
    chance = random.Random(7)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory() as root:
        JobStore(root).add(Job(job_id="j", prompt="a ball", frame_count=1, width=8, height=8), [b"png"])
        for _ in range(rounds):
            child = subprocess.Popen(
                [sys.executable, "-c", SAVE_FOREVER, root], env=env, stdout=subprocess.PIPE, text=True
            )
            for _ in range(chance.randint(1, 30)):
                child.stdout.readline()
            child.kill()
            child.communicate()
            under_way += bool(list((Path(root) / "j").glob(".staging-*")))
            job = JobStore(root).get("j")
            torn += job is None or not whole(job.message)
    return under_way, torn


def seconds_per_save(saves: int, write) -> float:
    with tempfile.TemporaryDirectory() as root:
        path = Path(root) / "manifest.json"
        text = json.dumps({"job_id": "j", "prompt": "a red ball on grass", "result_files": [{"size": 1}] * 81})
        start = time.perf_counter()
        for _ in range(saves):
            write(path, text)
        return (time.perf_counter() - start) / saves


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=40)
    parser.add_argument("--saves", type=int, default=200)
    args = parser.parse_args()
    under_way, torn = kills(args.kills)
    print("| kills | found a write under way | torn manifests |\n|---|---|---|")
    print(f"| {args.kills} | {under_way} | {torn} |\n")
    durable_s = seconds_per_save(args.saves, lambda path, text: jobs._write_json(path, json.loads(text)))
    plain_s = seconds_per_save(args.saves, lambda path, text: path.write_text(json.dumps(json.loads(text), indent=1)))
    print("| manifest save | ms |\n|---|---|")
    print(f"| durable (fsync file + folder, rename) | {durable_s * 1000:.2f} |")
    print(f"| plain write, no sync | {plain_s * 1000:.2f} |")


if __name__ == "__main__":
    main()
