"""The full-size benchmark model is Wan2.1-T2V-1.3B's architecture: checked on the meta device, no memory."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from wan_full_size import build_full_size_pipeline, parameter_counts  # noqa: E402


def test_full_size_components_have_the_released_sizes():
    pipe = build_full_size_pipeline("meta")
    counts = parameter_counts(pipe)
    assert 1.40e9 < counts["transformer"] < 1.44e9  # "about 1.4B"
    assert 5.6e9 < counts["text_encoder"] < 5.8e9  # umT5-XXL encoder, "about 5.7B"
    assert 1.2e8 < counts["vae"] < 1.35e8  # "about 0.5 GB" in fp32
    assert pipe.transformer.config.num_attention_heads * pipe.transformer.config.attention_head_dim == 1536
    assert pipe.transformer.dtype == torch.bfloat16 and pipe.vae.dtype == torch.float32
    assert pipe.transformer.scale_shift_table.dtype == torch.float32  # kept in fp32, as from_pretrained does
