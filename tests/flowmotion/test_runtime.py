import numpy as np
import pytest

from flowmotion import FlowMotionConfig, FlowMotionError, transfer
from flowmotion.runtime import RuntimeOptions, apply_runtime_options
from flowmotion.tiny import build_tiny_pipeline

from .helpers import moving_square, seeded

FAST = FlowMotionConfig(num_inference_steps=3, guided_steps=1, optimization_steps=1)


@pytest.mark.slow
def test_native_attention_and_tiling_keep_the_result():
    pipe = build_tiny_pipeline()
    before = transfer(pipe, moving_square(), "a ball", config=FAST, generator=seeded(0)).frames
    apply_runtime_options(pipe, RuntimeOptions(attention_backend="native", vae_tiling=True, offload_text_encoder=True))
    assert pipe.vae.use_tiling
    after = transfer(pipe, moving_square(), "a ball", config=FAST, generator=seeded(0)).frames
    assert np.allclose(before, after, atol=1e-5)


def test_unknown_attention_backend_is_named(tiny_pipe):
    with pytest.raises(FlowMotionError, match="attention backend 'warp-speed' cannot be used here"):
        apply_runtime_options(tiny_pipe, RuntimeOptions(attention_backend="warp-speed"))


# The run's plan -------------------------------------------------------------------------------------

import torch  # noqa: E402

from flowmotion.runtime import RunSize, plan_runtime  # noqa: E402

GiB = 2**30
FULL_SIZE = RunSize(tokens=13 * 30 * 45, channels=1536, pixels=720 * 480, text_encoder_bytes=int(10.6 * GiB))
CUDA = torch.device("cuda")


def test_a_big_gpu_keeps_everything_resident_and_runs_cfg_unbatched():
    plan = plan_runtime(CUDA, FULL_SIZE, free=60 * GiB, options=RuntimeOptions(), batch_guidance=None)
    assert (plan.offload_text_encoder, plan.vae_tiling, plan.batch_guidance) == (False, False, False)
    assert "17550 tokens a pass, at or over 4096" in plan.reasons["batch_guidance"]
    assert plan.reasons["vae_tiling"].startswith("60.0 GiB free, the run needs about")


def test_tight_memory_offloads_the_text_encoder_first_then_tiles():
    offload_only = plan_runtime(CUDA, FULL_SIZE, free=4 * GiB, options=RuntimeOptions(), batch_guidance=None)
    assert offload_only.offload_text_encoder and not offload_only.vae_tiling
    both = plan_runtime(
        CUDA,
        FULL_SIZE.__class__(**{**FULL_SIZE.__dict__, "text_encoder_bytes": GiB}),
        free=4 * GiB,
        options=RuntimeOptions(),
        batch_guidance=None,
    )
    assert both.offload_text_encoder and both.vae_tiling
    assert "1.0 GiB more with the text encoder off" in both.reasons["vae_tiling"]


def test_the_caller_overrides_the_plan():
    plan = plan_runtime(
        CUDA,
        FULL_SIZE,
        free=60 * GiB,
        batch_guidance=True,
        options=RuntimeOptions(offload_text_encoder=True, vae_tiling=True),
    )
    assert (plan.offload_text_encoder, plan.vae_tiling, plan.batch_guidance) == (True, True, True)
    assert plan.reasons["vae_tiling"] == "set by the runtime options"
    kept = plan_runtime(
        CUDA,
        FULL_SIZE,
        free=GiB,
        options=RuntimeOptions(offload_text_encoder=False, vae_tiling=False),
        batch_guidance=False,
    )
    assert (kept.offload_text_encoder, kept.vae_tiling, kept.batch_guidance) == (False, False, False)


def test_the_cpu_batches_small_passes_only_and_never_offloads():
    small = RunSize(tokens=9 * 4 * 4, channels=128, pixels=32 * 32, text_encoder_bytes=10**6)
    plan = plan_runtime(torch.device("cpu"), small, free=8 * GiB, options=RuntimeOptions(), batch_guidance=None)
    assert plan.batch_guidance and not plan.offload_text_encoder and not plan.vae_tiling
    assert plan.reasons["offload_text_encoder"] == "the text encoder is in host memory already"
    large = RunSize(tokens=9 * 8 * 12, channels=128, pixels=96 * 64, text_encoder_bytes=10**6)
    assert not plan_runtime(torch.device("cpu"), large, 8 * GiB, RuntimeOptions(), None).batch_guidance


@pytest.mark.slow
def test_a_run_records_its_plan_and_leaves_the_pipeline_as_it_was(fresh_pipe):
    out = transfer(
        fresh_pipe, moving_square(), "a ball", config=FAST, generator=seeded(0), runtime=RuntimeOptions(vae_tiling=True)
    )
    assert out.stats.runtime["vae_tiling"] == "on: set by the runtime options"
    assert out.stats.runtime["batch_guidance"] == "off: set by the config"
    assert not fresh_pipe.vae.use_tiling
    optimised = transfer(
        fresh_pipe,
        moving_square(),
        "a ball",
        config=FlowMotionConfig.optimized(
            **FAST.to_dict() | {"skip_identical_source_cfg": True, "batch_guidance": None}
        ),
        generator=seeded(0),
    )
    assert optimised.stats.runtime["batch_guidance"].startswith("on: ")
    assert optimised.stats.transformer_calls * 2 - 1 == optimised.stats.forward_passes  # one unbatched source pass


@pytest.mark.slow
def test_what_this_machine_cannot_do_falls_back_with_a_note(fresh_pipe, capsys):
    before = transfer(fresh_pipe, moving_square(), "a ball", config=FAST, generator=seeded(0)).frames
    notes = apply_runtime_options(
        fresh_pipe, RuntimeOptions(attention_backend="sage8", fp8_linear=True, compile_blocks=True)
    )
    assert len(notes) == 3
    assert "attention 'sage8' falls back to PyTorch SDPA: it needs a CUDA GPU, this run is on cpu" in notes
    assert "FP8 linear layers off, bf16 kept: FP8 matrix products need a CUDA GPU, this run is on cpu" in notes
    assert all(len(note.splitlines()) == 1 for note in notes)
    assert capsys.readouterr().err.count("flowmotion: ") == 3
    after = transfer(fresh_pipe, moving_square(), "a ball", config=FAST, generator=seeded(0)).frames
    assert np.array_equal(before, after)


def test_an_attention_kernel_that_is_not_installed_falls_back(fresh_pipe):
    notes = apply_runtime_options(fresh_pipe, RuntimeOptions(attention_backend="flash"))
    assert len(notes) == 1 and notes[0].startswith("attention 'flash' falls back to PyTorch SDPA: ")
    transfer(fresh_pipe, moving_square(), "a ball", config=FAST, generator=seeded(0))
