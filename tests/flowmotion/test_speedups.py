"""The speed-ups keep the result: each is checked against the faithful run."""

import pytest
import torch

from flowmotion import FlowMotionConfig, transfer
from flowmotion.cache import TransferCache

from .helpers import moving_square, seeded

SMALL = moving_square(frames=5, height=16, width=16)


def run(pipe, config, prompt="a ball", seed=0, source=SMALL, cache=None):
    calls = []
    handle = pipe.transformer.register_forward_pre_hook(lambda module, args: calls.append(1))
    try:
        out = transfer(pipe, source, prompt, config=config, generator=seeded(seed), output_type="latent", cache=cache)
    finally:
        handle.remove()
    return out, len(calls)


@pytest.mark.slow
def test_skipping_the_identical_source_cfg_saves_ten_passes_and_changes_nothing(tiny_pipe):
    faithful, faithful_calls = run(tiny_pipe, FlowMotionConfig())
    skipped, skipped_calls = run(tiny_pipe, FlowMotionConfig(skip_identical_source_cfg=True))
    assert (faithful_calls, skipped_calls) == (180, 170)
    assert skipped.stats.forward_passes == 170
    assert torch.equal(faithful.frames, skipped.frames)


def test_batched_guidance_halves_the_calls_and_matches(tiny_pipe):
    unbatched, unbatched_calls = run(tiny_pipe, FlowMotionConfig(skip_identical_source_cfg=True))
    batched, batched_calls = run(tiny_pipe, FlowMotionConfig(skip_identical_source_cfg=True, batch_guidance=True))
    assert unbatched_calls == 170 and batched_calls == 10 * (1 + 3 + 1) + 40
    assert batched.stats.forward_passes == 170 and batched.stats.transformer_calls == batched_calls
    assert torch.allclose(batched.frames, unbatched.frames, atol=1e-4)


@pytest.mark.slow
def test_a_reprompt_of_a_cached_shot_skips_the_source_and_matches_an_uncached_run(tiny_pipe):
    config = FlowMotionConfig(skip_identical_source_cfg=True)
    cache = TransferCache()
    first, first_calls = run(tiny_pipe, config, prompt="a red ball", cache=cache)
    assert first_calls == 170 and not first.stats.source_cache_hit
    reprompt, reprompt_calls = run(tiny_pipe, config, prompt="a blue cube", cache=cache)
    assert reprompt_calls == 160 and reprompt.stats.source_cache_hit
    uncached, _ = run(tiny_pipe, config, prompt="a blue cube")
    assert torch.equal(reprompt.frames, uncached.frames)
    new_seed, new_seed_calls = run(tiny_pipe, config, prompt="a blue cube", seed=5, cache=cache)
    assert new_seed_calls == 160 and not torch.equal(new_seed.frames, reprompt.frames)


@pytest.mark.slow
def test_the_cache_misses_when_the_shot_or_source_settings_change(tiny_pipe):
    config = FlowMotionConfig(skip_identical_source_cfg=True)
    cache = TransferCache()
    run(tiny_pipe, config, cache=cache)
    other_shot = moving_square(frames=5, height=16, width=16, seed=9)
    assert run(tiny_pipe, config, source=other_shot, cache=cache)[1] == 170
    assert run(tiny_pipe, config.replace(source_seed=1), cache=cache)[1] == 170
    assert run(tiny_pipe, config.replace(guided_steps=9), cache=cache)[1] == 9 * 8 + 41 * 2 + 9


def test_source_motion_survives_a_restart_on_disk(tiny_pipe, tmp_path):
    config = FlowMotionConfig(skip_identical_source_cfg=True)
    first, _ = run(tiny_pipe, config, prompt="a cube", cache=TransferCache(tmp_path / "cache"))
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 1
    again, calls = run(tiny_pipe, config, prompt="a cube", cache=TransferCache(tmp_path / "cache"))
    assert calls == 160 and torch.equal(first.frames, again.frames)


def test_a_damaged_cache_file_costs_a_recompute_not_a_failure(tiny_pipe, tmp_path):
    config = FlowMotionConfig(skip_identical_source_cfg=True)
    run(tiny_pipe, config, cache=TransferCache(tmp_path / "cache"))
    for stored in (tmp_path / "cache").glob("*.safetensors"):
        stored.write_bytes(b"not a tensor file")
    out, calls = run(tiny_pipe, config, cache=TransferCache(tmp_path / "cache"))
    assert calls == 170 and not out.stats.source_cache_hit


def test_prompt_embeddings_are_encoded_once(tiny_pipe):
    encodes = []
    handle = tiny_pipe.text_encoder.register_forward_pre_hook(lambda module, args: encodes.append(1))
    cache = TransferCache()
    fast = FlowMotionConfig(num_inference_steps=3, guided_steps=1, optimization_steps=1)
    try:
        transfer(tiny_pipe, SMALL, "a ball", config=fast, output_type="latent", cache=cache)
        assert len(encodes) == 2  # the prompt, and "" once for both the negative and the source prompt
        transfer(tiny_pipe, SMALL, "a ball", config=fast, output_type="latent", cache=cache)
        assert len(encodes) == 2
        transfer(tiny_pipe, SMALL, "a cube", config=fast, output_type="latent", cache=cache)
        assert len(encodes) == 3
    finally:
        handle.remove()


def test_source_noise_does_not_depend_on_the_target_seed(tiny_pipe):
    """The same source seed gives the same source motion whatever the generator; a new one differs."""
    config = FlowMotionConfig(num_inference_steps=4, guided_steps=2, optimization_steps=1)
    noise = torch.randn(1, 16, 2, 2, 2, generator=seeded(1))
    a = transfer(tiny_pipe, SMALL, "a ball", config=config, latents=noise, generator=seeded(1), output_type="latent")
    b = transfer(tiny_pipe, SMALL, "a ball", config=config, latents=noise, generator=seeded(2), output_type="latent")
    c = transfer(tiny_pipe, SMALL, "a ball", config=config.replace(source_seed=3), latents=noise, output_type="latent")
    assert torch.equal(a.frames, b.frames) and not torch.equal(a.frames, c.frames)


def count_block_calls(pipe):
    """Runs of the last block's feed-forward layer (skipped when a step cache reuses the block), by phase."""
    phase = {"now": None}
    calls: dict[str, int] = {}

    def on_block(module, args):
        calls[phase["now"]] = calls.get(phase["now"], 0) + 1

    handle = pipe.transformer.blocks[-1].ffn.register_forward_pre_hook(on_block)
    return phase, calls, handle


def test_the_step_cache_sees_only_the_unguided_steps(tiny_pipe):
    config = FlowMotionConfig(
        num_inference_steps=8,
        guided_steps=3,
        optimization_steps=2,
        guidance_scale=1.0,
        source_guidance_scale=1.0,
        unguided_step_cache=1e6,
    )  # a threshold so high that every cached step is skipped
    phase, calls, handle = count_block_calls(tiny_pipe)
    try:
        out = transfer(
            tiny_pipe,
            SMALL,
            "a ball",
            config=config,
            generator=seeded(0),
            output_type="latent",
            on_progress=lambda p: phase.update(now=p.phase),
        )
    finally:
        handle.remove()
    assert calls["source_motion"] == 3 and calls["guided_step"] == 3 * (2 + 1)  # every block ran
    assert calls["sampling"] == 1  # the first unguided step computes; the other four reuse it
    assert out.stats.forward_passes == 3 + 9 + 5
    assert not tiny_pipe.transformer.is_cache_enabled

    uncached = transfer(
        tiny_pipe,
        SMALL,
        "a ball",
        config=config.replace(unguided_step_cache=0.0),
        generator=seeded(0),
        output_type="latent",
    )
    assert not torch.equal(out.frames, uncached.frames)
    guided_only = dict(num_inference_steps=3, guided_steps=3)
    a = transfer(
        tiny_pipe, SMALL, "a ball", config=config.replace(**guided_only), generator=seeded(0), output_type="latent"
    )
    b = transfer(
        tiny_pipe,
        SMALL,
        "a ball",
        config=config.replace(unguided_step_cache=0.0, **guided_only),
        generator=seeded(0),
        output_type="latent",
    )
    assert torch.equal(a.frames, b.frames)


def test_the_step_cache_is_removed_when_a_transfer_is_cancelled(tiny_pipe):
    import pytest

    from flowmotion import TransferCancelled

    config = FlowMotionConfig(num_inference_steps=6, guided_steps=1, optimization_steps=1, unguided_step_cache=0.1)
    passes = []
    with pytest.raises(TransferCancelled):
        transfer(
            tiny_pipe,
            SMALL,
            "a ball",
            config=config,
            on_progress=lambda p: passes.append(p.phase),
            should_cancel=lambda: passes.count("sampling") >= 2,
        )
    assert not tiny_pipe.transformer.is_cache_enabled


def test_a_cache_write_that_fails_midway_leaves_no_file(tmp_path, monkeypatch):
    from flowmotion import cache as cache_module

    def disk_full(tensors, path):
        open(path, "wb").write(b"half a tensor file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache_module, "save_file", disk_full)
    motions = cache_module.SourceMotionCache(tmp_path / "cache")
    entry = cache_module.SourceMotion(torch.zeros(1, 2), [torch.ones(1, 2)])
    with pytest.raises(OSError, match="No space"):
        motions.put("key", entry)
    assert list((tmp_path / "cache").iterdir()) == []


def test_a_sole_writer_removes_what_a_killed_writer_left_and_no_one_else_does(tmp_path):
    from flowmotion.cache import SourceMotionCache

    folder = tmp_path / "cache"
    folder.mkdir()
    (folder / ".staging-0123abcd-5e6f.safetensors").write_bytes(b"half a tensor file")
    SourceMotionCache(folder)  # another process may be writing it right now
    assert [p.name for p in folder.iterdir()] == [".staging-0123abcd-5e6f.safetensors"]
    SourceMotionCache(folder, sole_writer=True)
    assert list(folder.iterdir()) == []


def relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


REUSE = dict(skip_identical_source_cfg=True, reuse_velocity_across_iterations=True)


@pytest.mark.slow
def test_reusing_the_velocity_across_iterations_runs_130_passes_and_120_on_a_reprompt(tiny_pipe):
    cache = TransferCache()
    new_shot, new_shot_calls = run(tiny_pipe, FlowMotionConfig(**REUSE), prompt="a red ball", cache=cache)
    reprompt, reprompt_calls = run(tiny_pipe, FlowMotionConfig(**REUSE), prompt="a blue cube", cache=cache)
    assert (new_shot_calls, reprompt_calls) == (130, 120)
    assert (new_shot.stats.forward_passes, reprompt.stats.forward_passes) == (130, 120)
    assert reprompt.stats.source_cache_hit
    faithful, _ = run(tiny_pipe, FlowMotionConfig(), prompt="a red ball")
    assert 0 < relative_difference(new_shot.frames, faithful.frames) < 0.05


@pytest.mark.slow
def test_reusing_the_velocity_for_the_euler_step_too_runs_110_passes_and_100_on_a_reprompt(tiny_pipe):
    config = FlowMotionConfig(reuse_velocity_for_euler_step=True, **REUSE)
    cache = TransferCache()
    assert run(tiny_pipe, config, cache=cache)[1] == 110
    assert run(tiny_pipe, config, prompt="a blue cube", cache=cache)[1] == 100
    alone = FlowMotionConfig(reuse_velocity_for_euler_step=True)
    assert run(tiny_pipe, alone)[1] == 10 * (2 + 3 * 2) + 40 * 2 == 160


@pytest.mark.slow
def test_reuse_is_exact_with_one_adam_iteration_and_counts_passes_without_any(tiny_pipe):
    one = FlowMotionConfig(optimization_steps=1, skip_identical_source_cfg=True)
    assert torch.equal(
        run(tiny_pipe, one)[0].frames, run(tiny_pipe, one.replace(reuse_velocity_across_iterations=True))[0].frames
    )
    # Without Adam iterations there is no velocity to reuse: the Euler step evaluates its own.
    none = FlowMotionConfig(optimization_steps=0, reuse_velocity_for_euler_step=True, **REUSE)
    out, calls = run(tiny_pipe, none)
    assert calls == out.stats.forward_passes == 10 * (1 + 2) + 40 * 2


def test_forward_pass_count_matches_every_reuse_combination(tiny_pipe):
    from flowmotion import forward_pass_count

    for across in (False, True):
        for euler in (False, True):
            config = FlowMotionConfig(
                num_inference_steps=6,
                guided_steps=3,
                reuse_velocity_across_iterations=across,
                reuse_velocity_for_euler_step=euler,
            )
            out, calls = run(tiny_pipe, config)
            assert calls == out.stats.forward_passes == forward_pass_count(config)


def test_the_optimised_config_reuses_the_velocity_across_iterations_only(tiny_pipe):
    config = FlowMotionConfig.optimized()
    assert config.reuse_velocity_across_iterations and not config.reuse_velocity_for_euler_step
    assert config.batch_guidance is None  # the machine's plan decides
    cache = TransferCache()
    runs = [run(tiny_pipe, config, prompt=p, cache=cache) for p in ("a red ball", "a blue cube")]
    assert [out.stats.forward_passes for out, _ in runs] == [130, 120]
    # On the CPU a pass of the tiny model is small, so the plan batches CFG: one call per pair.
    assert [calls for _, calls in runs] == [10 * (1 + 1 + 1) + 40, 10 * 2 + 40]
