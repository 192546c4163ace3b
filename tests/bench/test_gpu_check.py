"""The GPU check's argument handling and row selection, on the CPU (no GPU is needed to plan a run)."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "PYTHON": sys.executable}


def run(*command):
    return subprocess.run(command, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)


def test_a_dry_run_plans_every_stage_at_half_the_steps_with_quick():
    done = run("bash", "bench/gpu_check.sh", "--dry-run", "--quick", "--modes", "plain,new-shot", "--accuracy", "fp8")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "--num-inference-steps 25 --guided-steps 5" in out and "--device cuda" in out
    assert "bench/speed.py --size full --device cuda --steps 25 --guided-steps 5 --modes plain,new-shot" in out
    assert "bench/accuracy.py --size full --device cuda --options fp8" in out
    assert "pip install" not in out  # a dry run installs nothing


def test_a_dry_run_without_quick_keeps_the_papers_steps_and_can_skip_accuracy():
    out = run("bash", "bench/gpu_check.sh", "--dry-run", "--accuracy", "").stdout
    assert "--steps 50 --guided-steps 10" in out and "accuracy.py" not in out


def test_bad_arguments_are_named():
    unknown = run("bash", "bench/gpu_check.sh", "--fast")
    assert unknown.returncode == 2 and "unknown argument '--fast'" in unknown.stderr
    budget = run("bash", "bench/gpu_check.sh", "--budget", "8min")
    assert budget.returncode == 2 and "--budget must be whole seconds, got '8min'" in budget.stderr


def test_without_a_gpu_it_says_so_and_installs_nothing():
    done = run("bash", "bench/gpu_check.sh", "--quick")
    assert done.returncode == 1 and "torch sees no CUDA GPU here" in done.stderr
    assert "==" not in done.stdout


def test_speed_rows_are_selected_by_name_and_their_passes_counted():
    done = run(sys.executable, "bench/speed.py", "--dry-run", "--modes", "faithful,new-shot,reprompt,exact")
    assert done.returncode == 0, done.stderr
    lines = [line.strip() for line in done.stdout.splitlines()[1:]]
    assert lines == [
        "FlowMotion faithful: 180 passes",
        "optimised, new shot: 130 passes, 120 with the shot cached",
        "optimised, re-prompt: 130 passes, 120 with the shot cached",
        "optimised without velocity reuse, re-prompt: 170 passes, 160 with the shot cached",
    ]
    bad = run(sys.executable, "bench/speed.py", "--dry-run", "--modes", "plain,warp")
    assert bad.returncode == 2 and "unknown mode 'warp'" in bad.stderr
