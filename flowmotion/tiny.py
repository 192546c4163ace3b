"""Tiny Wan pipelines built in code: the same diffusers classes as Wan2.1 (and Wan2.2's TI2V-5B
layout), a few thousand random weights. They are the tests' fixtures: CPU-fast, built without any
download or file. Their tokenizer is byte-level and built locally, so any prompt tokenizes without a
vocabulary file. (The embedded model that `load_pipeline("embedded")` loads is a trained one: see
flowmotion.toy.)
"""

from __future__ import annotations

import torch

TEXT_DIM = 32
LATENT_CHANNELS = 16
FLOW_SHIFT = 3.0
SPECIAL_TOKENS = ("<pad>", "</s>", "<unk>")


def build_tokenizer():
    """A byte-level tokenizer that appends </s>, like umT5's, with a fixed vocabulary of 259."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    byte_symbols = sorted(set(pre_tokenizers.ByteLevel.alphabet()))
    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS)}
    vocab.update({symbol: len(SPECIAL_TOKENS) + index for index, symbol in enumerate(byte_symbols)})
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", vocab["</s>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", model_max_length=512
    )


def build_text_encoder(vocab_size: int, width: int = TEXT_DIM, head_width: int = 8, feed_forward: int = 64):
    """A two-layer umT5 encoder of `width` (the tests' by default; the embedded model's is wider)."""
    from transformers import UMT5Config, UMT5EncoderModel

    config = UMT5Config(
        vocab_size=vocab_size,
        d_model=width,
        d_kv=head_width,
        d_ff=feed_forward,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=32,
        feed_forward_proj="gated-gelu",
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    return UMT5EncoderModel(config)


def build_transformer(channels: int = LATENT_CHANNELS):
    from diffusers import WanTransformer3DModel

    return WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=channels,
        out_channels=channels,
        text_dim=TEXT_DIM,
        freq_dim=32,
        ffn_dim=48,
        num_layers=2,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
    )


def build_vae():
    from diffusers import AutoencoderKLWan

    return AutoencoderKLWan(
        base_dim=3,
        z_dim=LATENT_CHANNELS,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
    )


def build_scheduler():
    """Wan2.1's own scheduler settings: UniPC over flow sigmas with shift 3."""
    from diffusers import UniPCMultistepScheduler

    return UniPCMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, num_train_timesteps=1000, flow_shift=FLOW_SHIFT
    )


def build_tiny_pipeline(seed: int = 0):
    """A WanPipeline with random tiny components; the same seed gives the same weights."""
    from diffusers import WanPipeline

    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        tokenizer = build_tokenizer()
        text_encoder = build_text_encoder(len(tokenizer)).eval()
        transformer = build_transformer().eval()
        vae = build_vae().eval()
    finally:
        torch.random.set_rng_state(state)
    pipe = WanPipeline(
        tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, scheduler=build_scheduler(), transformer=transformer
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


TI2V_LATENT_CHANNELS = 48


def build_ti2v_vae():
    """Wan2.2's VAE layout (TI2V-5B): 48 latent channels, residual blocks, a 2x2 patch folded into the
    channels before the encoder, so 16x spatial and 4x temporal compression; a few channels wide."""
    from diffusers import AutoencoderKLWan

    return AutoencoderKLWan(
        base_dim=4,
        decoder_base_dim=6,
        z_dim=TI2V_LATENT_CHANNELS,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
        is_residual=True,
        in_channels=12,
        out_channels=12,
        patch_size=2,
        scale_factor_spatial=16,
        scale_factor_temporal=4,
        latents_mean=[0.0] * TI2V_LATENT_CHANNELS,
        latents_std=[1.0] * TI2V_LATENT_CHANNELS,
    )


def build_tiny_ti2v_pipeline(seed: int = 0):
    """A WanPipeline in Wan2.2 TI2V-5B's layout (`expand_timesteps`, the 48-channel VAE) with random
    tiny components; the same seed gives the same weights."""
    from diffusers import WanPipeline

    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        tokenizer = build_tokenizer()
        text_encoder = build_text_encoder(len(tokenizer)).eval()
        transformer = build_transformer(TI2V_LATENT_CHANNELS).eval()
        vae = build_ti2v_vae().eval()
    finally:
        torch.random.set_rng_state(state)
    pipe = WanPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        scheduler=build_scheduler(),
        transformer=transformer,
        expand_timesteps=True,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe
