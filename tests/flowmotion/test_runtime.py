import numpy as np
import pytest

from flowmotion import FlowMotionConfig, FlowMotionError, transfer
from flowmotion.runtime import RuntimeOptions, apply_runtime_options
from flowmotion.tiny import build_tiny_pipeline

from .helpers import moving_square, seeded

FAST = FlowMotionConfig(num_inference_steps=3, guided_steps=1, optimization_steps=1)


def test_native_attention_and_tiling_keep_the_result():
    pipe = build_tiny_pipeline()
    before = transfer(pipe, moving_square(), "a ball", config=FAST, generator=seeded(0)).frames
    apply_runtime_options(pipe, RuntimeOptions(attention_backend="native", vae_tiling=True,
                                               offload_text_encoder=True))
    assert pipe.vae.use_tiling
    after = transfer(pipe, moving_square(), "a ball", config=FAST, generator=seeded(0)).frames
    assert np.allclose(before, after, atol=1e-5)


def test_unknown_attention_backend_is_named(tiny_pipe):
    with pytest.raises(FlowMotionError, match="attention backend 'warp-speed' cannot be used here"):
        apply_runtime_options(tiny_pipe, RuntimeOptions(attention_backend="warp-speed"))
