"""Train the embedded model: a small text-to-video flow-matching model of Wan2.1's architecture
on the procedural clips of data.py, saved with save_pretrained so it loads like the real one.

    python -m flowmotion.toy.train --out flowmotion/embedded
        [--vae-frame-steps 2500] [--vae-clip-steps 2000] [--decoder-steps 800] [--steps 6500]

Stages: a word-level tokenizer and a umT5 text encoder (kept at its seeded initialisation: its
embeddings only need to tell captions apart, and the transformer learns to read them); the Wan
VAE, trained for reconstruction (single frames, short clips, then the decoder alone on whole
clips); latent statistics, so latents are normalised as Wan's are; then
the Wan transformer, trained with the flow-matching objective (v = eps - z0) on cached latents.
Every stage counts steps, not time, so a seed gives the same weights on any machine (up to the
floating-point order of its kernels); the defaults finish within about an hour on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import deque
from pathlib import Path

import numpy as np
import torch

from .data import FRAMES, SIZE, training_clips, vocabulary

LATENT_CHANNELS = 16
TEXT_DIM = 64
MAX_SEQUENCE_LENGTH = 512
FLOW_SHIFT = 3.0
VAE_CLIP_FRAMES = 9


def build_tokenizer():
    """Word-level, lower-cased, appends </s> like umT5; unknown words map to <unk>."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = ["<pad>", "</s>", "<unk>", *vocabulary()]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                   model_max_length=MAX_SEQUENCE_LENGTH)


def build_text_encoder(vocab_size: int):
    from transformers import UMT5Config, UMT5EncoderModel

    config = UMT5Config(vocab_size=vocab_size, d_model=TEXT_DIM, d_kv=16, d_ff=128, num_layers=2, num_heads=4,
                        relative_attention_num_buckets=8, relative_attention_max_distance=32,
                        feed_forward_proj="gated-gelu", pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    return UMT5EncoderModel(config).eval()


def build_vae():
    from diffusers import AutoencoderKLWan

    # Time is halved once, not twice as in Wan: a VAE this small cannot carry a moving object through
    # four frames per latent frame (its decoded objects stand still), and two keep the motion.
    return AutoencoderKLWan(base_dim=8, z_dim=LATENT_CHANNELS, dim_mult=[1, 2, 2], num_res_blocks=1,
                            temperal_downsample=[False, True], scale_factor_spatial=4, scale_factor_temporal=2,
                            latents_mean=[0.0] * LATENT_CHANNELS, latents_std=[1.0] * LATENT_CHANNELS)


def build_transformer():
    from diffusers import WanTransformer3DModel

    return WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=4, attention_head_dim=32,
                                 in_channels=LATENT_CHANNELS, out_channels=LATENT_CHANNELS, text_dim=TEXT_DIM,
                                 freq_dim=64, ffn_dim=512, num_layers=4, rope_max_seq_len=64)


def to_video(frames: np.ndarray) -> torch.Tensor:
    """uint8 (batch, frames, H, W, 3) -> float (batch, 3, frames, H, W) in [-1, 1]."""
    return torch.from_numpy(frames).float().div(127.5).sub(1.0).permute(0, 4, 1, 2, 3)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def check_finite(loss: torch.Tensor, stage: str, step: int) -> None:
    if not torch.isfinite(loss):
        raise SystemExit(f"{stage} training diverged at step {step} (loss {loss.item()}); try another --seed")


class StageLosses:
    """A training stage's losses: stops on a non-finite one, logs one every `every` steps, and averages
    the last `every` for the stage's summary."""

    def __init__(self, stage: str, steps: int, measure: str, every: int):
        self.stage, self.steps, self.measure, self.every = stage, steps, measure, every
        self.recent: deque[float] = deque(maxlen=every)

    def add(self, step: int, loss: torch.Tensor, detail: str = "") -> None:
        check_finite(loss, self.stage, step)
        self.recent.append(loss.item())
        if step % self.every == 0:
            log(f"{self.stage} step {step}/{self.steps}{detail}: {self.measure} {loss.item():.4f}")

    def final(self) -> float:
        final = float(np.mean(self.recent))
        log(f"{self.stage}: {self.steps} steps, {self.measure} over the last {self.every} {final:.4f}")
        return final


def object_weights(clips, object_weight: float = 8.0) -> torch.Tensor:
    """Per-pixel loss weights: object pixels weigh more, since the shapes are a small share of each frame
    but all of its meaning."""
    return 1.0 + object_weight * torch.from_numpy(np.stack([c.mask for c in clips])).float().unsqueeze(1)


def weighted_l1(reconstruction: torch.Tensor, video: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return ((reconstruction - video).abs() * weight).mean() / weight.mean()


def optimizer_step(optimizer, loss: torch.Tensor, parameters, lr: float) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(parameters, 1.0)
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.step()


def vae_step(vae, optimizer, clips, lr: float) -> torch.Tensor:
    """One reconstruction step through the posterior's mean (FlowMotion encodes sources with the mean
    too)."""
    video = to_video(np.stack([c.frames for c in clips]))
    posterior = vae.encode(video).latent_dist
    reconstruction = vae.decode(posterior.mean).sample
    loss = weighted_l1(reconstruction, video, object_weights(clips)) + 1e-6 * posterior.kl().mean()
    optimizer_step(optimizer, loss, vae.parameters(), lr)
    return loss


def train_vae(vae, seed: int, image_steps: int, clip_steps: int, lr: float = 2e-3) -> float:
    """Two stages: single frames in large batches (each frame goes through the VAE's causal first-frame
    path, so the spatial layers learn fast), then clips of VAE_CLIP_FRAMES frames: the first frame and
    two of the causal 4-frame chunks the VAE encodes a clip in, so the temporal layers and the chunk
    caches learn what every later chunk of a longer clip sees, at half a 17-frame clip's cost."""
    optimizer = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    vae.train()
    total = image_steps + clip_steps
    losses = StageLosses("vae", total, "weighted L1", 50)
    for step in range(total):
        images = step < image_steps
        clips = training_clips(32 if images else 8, seed * 1_000_003 + step, 1 if images else VAE_CLIP_FRAMES)
        loss = vae_step(vae, optimizer, clips, lr * max(0.05, 1.0 - step / total))
        losses.add(step, loss, " (frames)" if images else " (clips)")
    vae.eval()
    return losses.final()


DECODER_PREFIXES = ("decoder.", "post_quant_conv.")


def train_decoder(vae, seed: int, first_step: int, steps: int, lr: float = 5e-4) -> float:
    """The decoder alone on whole clips, the encoder frozen (so the latents, and the transformer trained on
    them, do not change). The decoder turns latent frames into video one latent frame at a time, carrying
    its causal caches from one to the next; clips of VAE_CLIP_FRAMES frames teach it half the chain a
    17-frame clip needs, and without this stage the second half of a clip comes out in wrong colours."""
    parameters = [p for name, p in vae.named_parameters() if name.startswith(DECODER_PREFIXES)]
    frozen = [p for name, p in vae.named_parameters() if not name.startswith(DECODER_PREFIXES)]
    for p in frozen:
        p.requires_grad_(False)
    optimizer = torch.optim.AdamW(parameters, lr=lr, weight_decay=0.0)
    vae.train()
    losses = StageLosses("decoder", steps, "weighted L1", 50)
    for step in range(steps):
        clips = training_clips(4, seed * 1_000_003 + first_step + step, FRAMES)
        video = to_video(np.stack([c.frames for c in clips]))
        with torch.no_grad():
            latent = vae.encode(video).latent_dist.mean
        loss = weighted_l1(vae.decode(latent).sample, video, object_weights(clips))
        optimizer_step(optimizer, loss, parameters, lr * max(0.05, 1.0 - step / steps))
        losses.add(step, loss, f" ({FRAMES}-frame clips)")
    for p in frozen:
        p.requires_grad_(True)
    vae.eval()
    return losses.final()


@torch.no_grad()
def encode_clips(vae, clips, batch: int = 16) -> torch.Tensor:
    latents = []
    for start in range(0, len(clips), batch):
        video = to_video(np.stack([c.frames for c in clips[start:start + batch]]))
        latents.append(vae.encode(video).latent_dist.mean)
    return torch.cat(latents)


@torch.no_grad()
def caption_embeddings(tokenizer, text_encoder, captions) -> dict[str, torch.Tensor]:
    """Embeddings exactly as WanPipeline makes them: encoded tokens, zero-padded to the full length."""
    out = {}
    for caption in captions:
        tokens = tokenizer(caption, return_tensors="pt")
        hidden = text_encoder(tokens.input_ids, tokens.attention_mask).last_hidden_state[0]
        padded = torch.zeros(MAX_SEQUENCE_LENGTH, TEXT_DIM)
        padded[: hidden.shape[0]] = hidden
        out[caption] = padded
    return out


def train_transformer(transformer, latents, captions, embeddings, seed: int, steps: int, batch: int = 16) -> float:
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(transformer.parameters(), lr=1e-3, weight_decay=0.01)
    transformer.train()
    losses = StageLosses("transformer", steps, "loss", 100)
    for step in range(steps):
        index = torch.randint(0, len(latents), (batch,), generator=generator)
        z0 = latents[index]
        text = torch.stack([embeddings["" if torch.rand(1, generator=generator) < 0.1 else captions[i]]
                            for i in index.tolist()])
        u = torch.rand(batch, generator=generator)
        sigma = FLOW_SHIFT * u / (1 + (FLOW_SHIFT - 1) * u)  # the schedule's shift, seen in training too
        noise = torch.randn(z0.shape, generator=generator)
        s = sigma.view(-1, 1, 1, 1, 1)
        noised = (1 - s) * z0 + s * noise
        prediction = transformer(hidden_states=noised, timestep=sigma * 1000, encoder_hidden_states=text,
                                 return_dict=False)[0]
        loss = torch.mean((prediction - (noise - z0)) ** 2)
        losses.add(step, loss)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(transformer.parameters(), 1.0)
        optimizer.step()
        warmup = min(1.0, (step + 1) / 200)
        for group in optimizer.param_groups:
            group["lr"] = 1e-3 * warmup * max(0.02, 0.5 * (1 + np.cos(np.pi * step / steps)))
    transformer.eval()
    return losses.final()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vae-frame-steps", type=int, default=2500, help="VAE steps on single frames (batch 32)")
    parser.add_argument("--vae-clip-steps", type=int, default=2000,
                        help=f"VAE steps on {VAE_CLIP_FRAMES}-frame clips (batch 8)")
    parser.add_argument("--decoder-steps", type=int, default=800,
                        help=f"decoder-only steps on {FRAMES}-frame clips (batch 4), the encoder frozen")
    parser.add_argument("--steps", type=int, default=6500, help="transformer flow-matching steps (batch 16)")
    parser.add_argument("--clips", type=int, default=6000, help="clips encoded for the transformer")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    torch.set_flush_denormal(True)  # denormals flushed to zero, as when the shipped weights were trained
    started = time.monotonic()

    from diffusers import UniPCMultistepScheduler, WanPipeline

    tokenizer = build_tokenizer()
    text_encoder = build_text_encoder(len(tokenizer))
    vae = build_vae()
    vae_l1 = train_vae(vae, args.seed, args.vae_frame_steps, args.vae_clip_steps)
    decoder_l1 = train_decoder(vae, args.seed, args.vae_frame_steps + args.vae_clip_steps, args.decoder_steps)

    clips = training_clips(args.clips, args.seed + 7)
    raw = encode_clips(vae, clips)
    mean = raw.mean(dim=(0, 2, 3, 4))
    std = raw.std(dim=(0, 2, 3, 4))
    vae.register_to_config(latents_mean=mean.tolist(), latents_std=std.tolist())
    latents = (raw - mean.view(1, -1, 1, 1, 1)) / std.view(1, -1, 1, 1, 1)
    log(f"encoded {len(clips)} clips to latents {tuple(latents.shape[1:])}")

    captions = [c.caption for c in clips]
    embeddings = caption_embeddings(tokenizer, text_encoder, sorted(set(captions)) + [""])
    transformer = build_transformer()
    flow_loss = train_transformer(transformer, latents, captions, embeddings, args.seed, args.steps)

    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                        num_train_timesteps=1000, flow_shift=FLOW_SHIFT)
    pipe = WanPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, scheduler=scheduler,
                       transformer=transformer)
    pipe.save_pretrained(args.out, safe_serialization=True)
    (args.out / "TRAINING.json").write_text(json.dumps({
        "seed": args.seed, "vae_frame_steps": args.vae_frame_steps, "vae_clip_steps": args.vae_clip_steps,
        "vae_weighted_l1": round(vae_l1, 4), "decoder_steps": args.decoder_steps,
        "decoder_weighted_l1": round(decoder_l1, 4), "transformer_steps": args.steps,
        "flow_matching_loss": round(flow_loss, 4), "clips": args.clips, "frames": FRAMES, "size": SIZE,
        "minutes_total": round((time.monotonic() - started) / 60, 1), "torch_threads": torch.get_num_threads(),
    }, indent=1))
    size = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    log(f"saved {args.out} ({size / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
