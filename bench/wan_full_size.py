"""Wan2.1-T2V-1.3B at full size with random weights: the real architecture's compute and memory,
without a download. Configs are those of the released Wan-AI/Wan2.1-T2V-1.3B-Diffusers."""

from __future__ import annotations

import torch

TRANSFORMER = dict(
    patch_size=(1, 2, 2),
    num_attention_heads=12,
    attention_head_dim=128,
    in_channels=16,
    out_channels=16,
    text_dim=4096,
    freq_dim=256,
    ffn_dim=8960,
    num_layers=30,
    cross_attn_norm=True,
    qk_norm="rms_norm_across_heads",
    eps=1e-6,
    rope_max_seq_len=1024,
)
UMT5_XXL = dict(
    vocab_size=256384,
    d_model=4096,
    d_kv=64,
    d_ff=10240,
    num_layers=24,
    num_heads=64,
    relative_attention_num_buckets=32,
    relative_attention_max_distance=128,
    feed_forward_proj="gated-gelu",
    tie_word_embeddings=False,
    pad_token_id=0,
    eos_token_id=1,
    decoder_start_token_id=0,
)


def build_full_size_pipeline(device: str = "cuda", dtype: torch.dtype = torch.bfloat16):
    """A WanPipeline with Wan2.1-T2V-1.3B's architecture and random weights, built on `device`.

    On the 'meta' device nothing is allocated: useful to check the sizes.
    """
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    from flowmotion.tiny import build_tokenizer

    default_dtype = torch.get_default_dtype()
    try:
        with torch.device(device):
            torch.set_default_dtype(dtype)
            transformer = WanTransformer3DModel(**TRANSFORMER).eval()
            text_encoder = UMT5EncoderModel(UMT5Config(**UMT5_XXL)).eval()
            torch.set_default_dtype(torch.float32)
            vae = AutoencoderKLWan().eval()  # the constructor's defaults are Wan2.1's VAE, kept in fp32
    finally:
        torch.set_default_dtype(default_dtype)
    keep = set(getattr(transformer, "_keep_in_fp32_modules", None) or [])
    for name, parameter in transformer.named_parameters():
        if keep.intersection(name.split(".")):
            parameter.data = parameter.data.float()  # as from_pretrained(torch_dtype=bf16) leaves them
    scheduler = UniPCMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, num_train_timesteps=1000, flow_shift=3.0
    )
    pipe = WanPipeline(
        tokenizer=build_tokenizer(), text_encoder=text_encoder, vae=vae, scheduler=scheduler, transformer=transformer
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def parameter_counts(pipe) -> dict[str, int]:
    return {
        name: sum(p.numel() for p in getattr(pipe, name).parameters())
        for name in ("transformer", "text_encoder", "vae")
    }
