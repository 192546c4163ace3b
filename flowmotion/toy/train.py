"""Train the embedded model: a small text-to-video flow-matching model of Wan2.1's architecture on
Blender-made shots (flowmotion.toy.blender_world, both looks) mixed with the procedural clips of
data.py, at a working area of --width x --height (80x48 by default), saved with save_pretrained so it
loads like the real one.

    python -m flowmotion.toy.train --out DIR --shots SHOTS_DIR [--device cuda|cpu] [--max-minutes M]
        [--width 80 --height 48] [--vae-frame-steps N] [--vae-clip-steps N] [--decoder-steps N] [--steps N]

Stages: a word-level tokenizer and a umT5 text encoder (kept at its seeded initialisation: its
embeddings only need to tell captions apart, and the transformer learns to read them); the Wan
VAE, trained for reconstruction (single frames, short clips, then the decoder alone on whole
clips); latent statistics, so latents are normalised as Wan's are; then the Wan transformer,
trained with the flow-matching objective (v = eps - z0) on cached latents.

Every clip is held on the training device and drawn with seeded augmentation that keeps its caption
true: a horizontal flip (its mask and track flipped too) and time reversal. Every stage counts
steps, not time, so a seed gives the same weights on any machine (up to the floating-point order of
its kernels). --max-minutes is a safety net: each stage gets a share of it, a stage that runs past its
share stops early, the model is saved all the same, and TRAINING.json records the steps done.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import tiny
from ..preview import vae_config_digest
from .data import FRAMES, training_clips, vocabulary

DEFAULT_WIDTH, DEFAULT_HEIGHT = 80, 48
SHOT_SHARE = 0.75
"""Share of training draws taken from the Blender shots; the rest are procedural clips."""
STAGE_SHARES = {"vae": 0.45, "decoder": 0.6, "transformer": 1.0}
"""Where each stage must end, as a share of --max-minutes (a stage that ends early leaves its time to the next)."""

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
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        model_max_length=MAX_SEQUENCE_LENGTH,
    )


def build_text_encoder(vocab_size: int):
    return tiny.build_text_encoder(vocab_size, width=TEXT_DIM, head_width=16, feed_forward=128).eval()


def build_vae():
    from diffusers import AutoencoderKLWan

    # Time is halved once, not twice as in Wan: a VAE this small cannot carry a moving object through
    # four frames per latent frame (its decoded objects stand still), and two keep the motion.
    return AutoencoderKLWan(
        base_dim=8,
        z_dim=LATENT_CHANNELS,
        dim_mult=[1, 2, 2],
        num_res_blocks=1,
        temperal_downsample=[False, True],
        scale_factor_spatial=4,
        scale_factor_temporal=2,
        latents_mean=[0.0] * LATENT_CHANNELS,
        latents_std=[1.0] * LATENT_CHANNELS,
    )


def framewise_vae(vae):
    """`vae` made frame-wise: time is never compressed (one latent frame a frame) and every causal
    convolution sees its own frame only, so each frame is encoded and decoded alone, exactly as `vae`
    carries a clip's first frame. The spatial weights are `vae`'s own; its time-compressing convolutions
    are dropped. A moving object or camera then reaches the latent frame by frame, not averaged over
    pairs of frames, at twice the latent frames (and transformer tokens) of a clip."""
    from diffusers import AutoencoderKLWan

    config = {key: value for key, value in vae.config.items() if not key.startswith("_")}
    config.update(temperal_downsample=[False] * len(config["temperal_downsample"]), scale_factor_temporal=1)
    framewise = AutoencoderKLWan(**config)
    weights = {name: value for name, value in vae.state_dict().items() if ".time_conv." not in name}
    framewise.load_state_dict(weights)
    with torch.no_grad():
        for module in framewise.modules():
            if isinstance(module, torch.nn.Conv3d) and module.kernel_size[0] > 1:
                module.weight[:, :, :-1] = 0.0  # the causal kernel's earlier frames; the last is the frame's own
    return framewise


def build_transformer():
    from diffusers import WanTransformer3DModel

    return WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=4,
        attention_head_dim=32,
        in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        text_dim=TEXT_DIM,
        freq_dim=64,
        ffn_dim=512,
        num_layers=4,
        rope_max_seq_len=64,
    )


# ---- data ----


@dataclass
class ClipBank:
    """Every training clip on the training device: uint8 frames (clips, frames, H, W, 3), bool masks
    (clips, frames, H, W), the subject's tracks (clips, frames, 2: x, y in pixels; NaN without one),
    captions, and how many of the first clips are Blender shots."""

    frames: torch.Tensor
    masks: torch.Tensor
    tracks: torch.Tensor
    captions: list[str]
    shot_clips: int

    @property
    def procedural_clips(self) -> int:
        return len(self.captions) - self.shot_clips

    def pick(self, count: int, generator: torch.Generator, shot_share: float = SHOT_SHARE) -> torch.Tensor:
        """Clip indices, each a shot with odds `shot_share` (when there are both kinds)."""
        shots, procedural = self.shot_clips, self.procedural_clips
        if shots == 0 or procedural == 0:
            return torch.randint(0, len(self.captions), (count,), generator=generator)
        from_shots = torch.rand(count, generator=generator) < shot_share
        shot_index = torch.randint(0, shots, (count,), generator=generator)
        procedural_index = shots + torch.randint(0, procedural, (count,), generator=generator)
        return torch.where(from_shots, shot_index, procedural_index)

    def sample(self, count: int, frames: int, generator: torch.Generator):
        """A batch of `frames`-frame windows with seeded flips and time reversals: video float
        (count, 3, frames, H, W) in [-1, 1], its masks (count, frames, H, W) and tracks (count, frames, 2)."""
        index = self.pick(count, generator)
        first = torch.randint(0, self.frames.shape[1] - frames + 1, (count,), generator=generator)
        flip, reverse = torch.rand(2, count, generator=generator) < 0.5
        device = self.frames.device
        index, times = index.to(device), (first[:, None] + torch.arange(frames)).to(device)
        window = index[:, None], times
        video, mask, track = augmented(
            self.frames[window], self.masks[window], self.tracks[window], flip.to(device), reverse.to(device)
        )
        return to_video(video), mask, track


def augmented(video: torch.Tensor, mask: torch.Tensor, track: torch.Tensor, flip: torch.Tensor, reverse: torch.Tensor):
    """Clips (batch, frames, H, W, 3) with their masks (batch, frames, H, W) and tracks (batch, frames, 2)
    mirrored left to right where `flip`, played backwards where `reverse`: captions name no direction,
    so both keep them true."""
    width = video.shape[3]
    mirrored = torch.stack([width - track[..., 0], track[..., 1]], dim=-1)
    video = torch.where(flip.view(-1, 1, 1, 1, 1), video.flip(3), video)
    mask = torch.where(flip.view(-1, 1, 1, 1), mask.flip(3), mask)
    track = torch.where(flip.view(-1, 1, 1), mirrored, track)
    return (
        torch.where(reverse.view(-1, 1, 1, 1, 1), video.flip(1), video),
        torch.where(reverse.view(-1, 1, 1, 1), mask.flip(1), mask),
        torch.where(reverse.view(-1, 1, 1), track.flip(1), track),
    )


def shot_clips(folder: Path, width: int, height: int) -> list:
    """The Blender shots in `folder` (both looks; or in the archive `folder` that blender_world's
    --pack made of one), checked against the working area."""
    from .blender_world import BlenderWorldError, clips_from_shots, is_archive

    if not is_archive(folder) and not (Path(folder) / "shots.json").is_file():
        raise SystemExit(
            f"{folder} holds no shots.json; render shots there with "
            f"`python -m flowmotion.toy.blender_world --out {folder} --width {width} --height {height}`"
        )
    try:
        clips = clips_from_shots(folder)
    except (BlenderWorldError, OSError, EOFError, ValueError) as error:
        raise SystemExit(f"the shots in {folder} cannot be read: {error}") from None
    for clip in clips:
        if clip.frames.shape[1:3] != (height, width) or len(clip.frames) < FRAMES:
            raise SystemExit(
                f"the shots in {folder} are {clip.frames.shape[2]}x{clip.frames.shape[1]} with "
                f"{len(clip.frames)} frames; training at {width}x{height} needs shots of that size "
                f"with at least {FRAMES} frames"
            )
    return clips


def build_bank(shots, procedural: int, seed: int, width: int, height: int, device: torch.device) -> ClipBank:
    clips = list(shots) + training_clips(procedural, seed + 7, FRAMES, width, height)
    frames = torch.from_numpy(np.stack([c.frames[:FRAMES] for c in clips])).to(device)
    masks = torch.from_numpy(np.stack([c.mask[:FRAMES] for c in clips])).to(device)
    tracks = torch.from_numpy(np.stack([np.asarray(c.track[:FRAMES], np.float32) for c in clips])).to(device)
    return ClipBank(frames, masks, tracks, [c.caption for c in clips], len(shots))


def to_video(frames: torch.Tensor) -> torch.Tensor:
    """uint8 (batch, frames, H, W, 3) -> float (batch, 3, frames, H, W) in [-1, 1]."""
    return frames.float().div(127.5).sub(1.0).permute(0, 4, 1, 2, 3)


# ---- stages ----


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


class Clock:
    """The --max-minutes safety net: each stage must end by its share of it."""

    def __init__(self, max_minutes: float | None):
        self.started, self.max_minutes = time.monotonic(), max_minutes

    def deadline(self, stage: str) -> float:
        if self.max_minutes is None:
            return float("inf")
        return self.started + 60.0 * self.max_minutes * STAGE_SHARES[stage]

    def minutes(self) -> float:
        return (time.monotonic() - self.started) / 60


class Stage:
    """A training stage's steps: stops at its deadline, checks losses and logs one every `every` steps
    (without waiting on the device each step), and sums itself up for TRAINING.json."""

    def __init__(self, name: str, steps: int, measure: str, every: int, deadline: float):
        self.name, self.steps, self.measure, self.every, self.deadline = name, steps, measure, every, deadline
        self.pending: list[torch.Tensor] = []
        self.recent: list[float] = []
        self.done = 0
        self.started = time.monotonic()

    def __iter__(self):
        for step in range(self.steps):
            if time.monotonic() > self.deadline:
                log(f"{self.name}: the time limit stopped it after {step} of {self.steps} steps")
                break
            yield step
            self.done = step + 1
        self._flush()

    def add(self, step: int, loss: torch.Tensor, detail: str = "") -> None:
        self.pending.append(loss.detach())
        if (step + 1) % self.every == 0:
            self._flush()
            log(f"{self.name} step {step + 1}/{self.steps}{detail}: {self.measure} {self.recent[-1]:.4f}")

    def _flush(self) -> None:
        if not self.pending:
            return
        values = torch.stack(self.pending).float().cpu().numpy()
        self.pending = []
        if not np.isfinite(values).all():
            raise SystemExit(
                f"{self.name} training diverged near step {self.done} (a loss of {values[-1]}); try another --seed"
            )
        self.recent = (self.recent + values.tolist())[-self.every :]

    def summary(self) -> dict:
        seconds = time.monotonic() - self.started
        final = float(np.mean(self.recent)) if self.recent else None
        log(
            f"{self.name}: {self.done}/{self.steps} steps in {seconds:.1f} s ({self.done / max(seconds, 1e-9):.2f} "
            f"steps/s), {self.measure} over the last {len(self.recent)} " + ("-" if final is None else f"{final:.4f}")
        )
        return {
            "steps": self.steps,
            "steps_done": self.done,
            "seconds": round(seconds, 1),
            "steps_per_s": round(self.done / max(seconds, 1e-9), 2),
            "loss": None if final is None else round(final, 4),
        }


def autocast(device: torch.device, precision: str):
    """bf16 autocast for the training passes on CUDA when asked; the weights stay fp32."""
    if precision == "bf16" and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def object_weights(mask: torch.Tensor, object_weight: float = 8.0) -> torch.Tensor:
    """Per-pixel loss weights (batch, 1, frames, H, W): object pixels weigh more, since the subject is a
    small share of each frame but all of its meaning."""
    return 1.0 + object_weight * mask.float().unsqueeze(1)


def weighted_l1(reconstruction: torch.Tensor, video: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return ((reconstruction.float() - video).abs() * weight).mean() / weight.mean()


def optimizer_step(optimizer, loss: torch.Tensor, parameters, lr: float) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(parameters, 1.0)
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.step()


@dataclass
class Sizes:
    """Steps and batch sizes of every stage."""

    vae_frame_steps: int
    vae_clip_steps: int
    decoder_steps: int
    transformer_steps: int
    vae_frame_batch: int
    vae_clip_batch: int
    decoder_batch: int
    transformer_batch: int


def train_vae(vae, bank: ClipBank, seed: int, sizes: Sizes, clock: Clock, precision: str, lr: float = 2e-3) -> dict:
    """Two phases: single frames in large batches (each frame goes through the VAE's causal first-frame
    path, so the spatial layers learn fast), then clips of VAE_CLIP_FRAMES frames: the first frame and
    two of the causal 4-frame chunks the VAE encodes a clip in, so the temporal layers and the chunk
    caches learn what every later chunk of a longer clip sees, at half a 17-frame clip's cost. The
    reconstruction goes through the posterior's mean (FlowMotion encodes sources with the mean too)."""
    generator = torch.Generator().manual_seed(seed * 1_000_003)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    device = bank.frames.device
    vae.train()
    total = sizes.vae_frame_steps + sizes.vae_clip_steps
    stage = Stage("vae", total, "weighted L1", 50, clock.deadline("vae"))
    for step in stage:
        images = step < sizes.vae_frame_steps
        video, mask, _ = bank.sample(
            sizes.vae_frame_batch if images else sizes.vae_clip_batch, 1 if images else VAE_CLIP_FRAMES, generator
        )
        with autocast(device, precision):
            posterior = vae.encode(video).latent_dist
            reconstruction = vae.decode(posterior.mean).sample
        loss = weighted_l1(reconstruction, video, object_weights(mask)) + 1e-6 * posterior.kl().float().mean()
        optimizer_step(optimizer, loss, vae.parameters(), lr * max(0.05, 1.0 - step / total))
        stage.add(step, loss, " (frames)" if images else " (clips)")
    vae.eval()
    return stage.summary()


DECODER_PREFIXES = ("decoder.", "post_quant_conv.")


def train_decoder(vae, bank: ClipBank, seed: int, sizes: Sizes, clock: Clock, precision: str, lr: float = 5e-4) -> dict:
    """The decoder alone on whole clips, the encoder frozen (so the latents, and the transformer trained on
    them, do not change). The decoder turns latent frames into video one latent frame at a time, carrying
    its causal caches from one to the next; without this stage the second half of a clip comes out in
    wrong colours."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + 1)
    parameters = [p for name, p in vae.named_parameters() if name.startswith(DECODER_PREFIXES)]
    frozen = [p for name, p in vae.named_parameters() if not name.startswith(DECODER_PREFIXES)]
    for p in frozen:
        p.requires_grad_(False)
    optimizer = torch.optim.AdamW(parameters, lr=lr, weight_decay=0.0)
    device = bank.frames.device
    vae.train()
    steps = sizes.decoder_steps
    stage = Stage("decoder", steps, "weighted L1", 50, clock.deadline("decoder"))
    for step in stage:
        video, mask, _ = bank.sample(sizes.decoder_batch, FRAMES, generator)
        with autocast(device, precision):
            with torch.no_grad():
                latent = vae.encode(video).latent_dist.mean
            reconstruction = vae.decode(latent).sample
        loss = weighted_l1(reconstruction, video, object_weights(mask))
        optimizer_step(optimizer, loss, parameters, lr * max(0.05, 1.0 - step / steps))
        stage.add(step, loss, f" ({FRAMES}-frame clips)")
    for p in frozen:
        p.requires_grad_(True)
    vae.eval()
    return stage.summary()


class LatentCache:
    """Raw latents (all four looks) of clips already encoded by one VAE, kept on disk between runs, so
    that a fine-tune that leaves the VAE alone does not encode the same shots again. A folder per VAE,
    named by a hash of its weights and configuration; a file per clip, named by a hash of its frames.
    Each file holds exactly what encoding gives, so a run reads the same latents it would encode."""

    def __init__(self, root: Path, vae):
        self.folder = Path(root) / vae_fingerprint(vae)

    def path(self, frames: torch.Tensor) -> Path:
        digest = hashlib.sha256(str(tuple(frames.shape)).encode())
        digest.update(frames.contiguous().cpu().numpy().tobytes())
        return self.folder / f"{digest.hexdigest()[:32]}.pt"

    def load(self, path: Path) -> torch.Tensor | None:
        try:
            latents = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            return None
        except Exception as error:  # a damaged file is encoded again, and says so
            latents = error
        if not isinstance(latents, torch.Tensor):
            log(f"latent cache: {path.name} cannot be read ({latents!r}); encoding that clip again")
            return None
        return latents

    def save(self, path: Path, latents: torch.Tensor) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.part")
        torch.save(latents.detach().cpu().clone(), partial)
        os.replace(partial, path)


def vae_fingerprint(vae) -> str:
    """A hash of all the VAE's weights and of its configuration but for the latent statistics (which
    are measured on these latents, after encoding)."""
    digest = vae_config_digest(vae, leave_out=("latents_mean", "latents_std"))
    for name, tensor in sorted(vae.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()[:24]


@torch.no_grad()
def encode_bank(vae, bank: ClipBank, batch: int = 32, cache: LatentCache | None = None) -> tuple[torch.Tensor, int]:
    """Latents of every clip in its four looks (as is, flipped, reversed, both), in fp32 as
    FlowMotion encodes: (clips * 4, channels, latent frames, h, w), clip i's looks at 4i..4i+3; and how
    many clips came from `cache` (the others are encoded, and written to it)."""
    count = len(bank.captions)
    paths = [cache.path(bank.frames[i]) for i in range(count)] if cache else []
    found: list[torch.Tensor | None] = [cache.load(path) for path in paths] if cache else [None] * count
    missing = [i for i in range(count) if found[i] is None]
    looks = torch.tensor([[False, False], [True, False], [False, True], [True, True]], device=bank.frames.device)
    for first in range(0, len(missing), batch):
        clips = torch.tensor(missing[first : first + batch], device=bank.frames.device)
        held = (bank.frames, bank.masks, bank.tracks)
        video, mask, track = (tensor[clips].repeat_interleave(4, dim=0) for tensor in held)
        flip, reverse = looks.repeat(len(clips), 1).unbind(1)
        video, _, _ = augmented(video, mask, track, flip, reverse)
        encoded = vae.encode(to_video(video)).latent_dist.mean
        for j, i in enumerate(clips.tolist()):
            latents = found[i] = encoded[4 * j : 4 * j + 4]
            if cache:
                cache.save(paths[i], latents)
    device = bank.frames.device
    return torch.cat([latents.to(device) for latents in found if latents is not None]), count - len(missing)


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


def train_transformer(
    transformer,
    latents,
    bank: ClipBank,
    embeddings,
    seed: int,
    sizes: Sizes,
    clock: Clock,
    precision: str,
    lr: float = 1e-3,
) -> dict:
    """Flow matching on the cached latents: a clip drawn as the data mix says, in one of its four looks."""
    generator = torch.Generator().manual_seed(seed)
    device = latents.device
    captions = sorted(set(bank.captions))
    table = torch.stack([embeddings[c] for c in captions] + [embeddings[""]]).to(device)
    caption_index = torch.tensor([captions.index(c) for c in bank.captions])
    optimizer = torch.optim.AdamW(transformer.parameters(), lr=lr, weight_decay=0.01)
    transformer.train()
    steps, batch = sizes.transformer_steps, sizes.transformer_batch
    stage = Stage("transformer", steps, "loss", 100, clock.deadline("transformer"))
    for step in stage:
        clip = bank.pick(batch, generator)
        look = torch.randint(0, 4, (batch,), generator=generator)
        dropped = torch.rand(batch, generator=generator) < 0.1  # the empty caption, for classifier-free guidance
        text = table[torch.where(dropped, len(captions), caption_index[clip]).to(device)]
        z0 = latents[(clip * 4 + look).to(device)]
        u = torch.rand(batch, generator=generator)
        sigma = (FLOW_SHIFT * u / (1 + (FLOW_SHIFT - 1) * u)).to(device)  # the schedule's shift, seen in training
        noise = torch.randn(z0.shape, generator=generator).to(device)
        s = sigma.view(-1, 1, 1, 1, 1)
        noised = (1 - s) * z0 + s * noise
        with autocast(device, precision):
            prediction = transformer(
                hidden_states=noised, timestep=sigma * 1000, encoder_hidden_states=text, return_dict=False
            )[0]
        loss = torch.mean((prediction.float() - (noise - z0)) ** 2)
        warmup = min(1.0, (step + 1) / 200)
        optimizer_step(
            optimizer, loss, transformer.parameters(), lr * warmup * max(0.02, 0.5 * (1 + np.cos(np.pi * step / steps)))
        )
        stage.add(step, loss)
    transformer.eval()
    return stage.summary()


# ---- the run ----


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--shots", type=Path, help="a folder of Blender shots (blender_world's write_shots), or its --pack archive"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--width", type=int, default=DEFAULT_WIDTH, help="working width, a multiple of 8")
    parser.add_argument("--height", type=int, default=DEFAULT_HEIGHT, help="working height, a multiple of 8")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=("cuda", "cpu"))
    parser.add_argument(
        "--precision",
        default="bf16",
        choices=("bf16", "fp32"),
        help="autocast on CUDA (the weights stay fp32; on CPU training is always fp32)",
    )
    parser.add_argument("--max-minutes", type=float, help="stop each stage early once its share of this is spent")
    parser.add_argument("--procedural", type=int, default=2000, help="procedural clips mixed with the shots")
    parser.add_argument("--vae-frame-steps", type=int, default=600)
    parser.add_argument("--vae-clip-steps", type=int, default=400)
    parser.add_argument("--decoder-steps", type=int, default=120)
    parser.add_argument("--steps", type=int, default=1800, help="transformer flow-matching steps")
    parser.add_argument("--vae-frame-batch", type=int, default=64)
    parser.add_argument("--vae-clip-batch", type=int, default=16, help=f"{VAE_CLIP_FRAMES}-frame clips a VAE step")
    parser.add_argument("--decoder-batch", type=int, default=8, help=f"{FRAMES}-frame clips a decoder step")
    parser.add_argument("--batch", type=int, default=64, help="latent clips a transformer step")
    parser.add_argument(
        "--init-from",
        type=Path,
        help="fine-tune: start from this model folder's tokenizer, text encoder, VAE and transformer "
        "(e.g. flowmotion/embedded) instead of a seeded initialisation",
    )
    parser.add_argument(
        "--init-lr-scale",
        type=float,
        default=0.3,
        help="with --init-from, every stage's learning rate is scaled by this",
    )
    parser.add_argument(
        "--framewise-vae",
        action="store_true",
        help="make the VAE frame-wise before training (see framewise_vae): one latent frame a frame",
    )
    parser.add_argument(
        "--latent-cache",
        type=Path,
        help="keep the encoded latents in this folder (a subfolder per VAE) and read them back in later runs "
        "with the same VAE and clips, instead of encoding them again",
    )
    args = parser.parse_args(argv)
    if args.width % 8 or args.height % 8 or args.width < 16 or args.height < 16:
        parser.error(f"--width and --height must be multiples of 8, at least 16; got {args.width}x{args.height}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda was asked for but torch sees no CUDA GPU here; use --device cpu")
    if args.max_minutes is not None and args.max_minutes <= 0:
        parser.error("--max-minutes must be positive")
    return args


def initial_components(init_from: Path | None):
    """(tokenizer, text encoder, VAE, transformer): seeded new ones, or a trained model folder's own to
    fine-tune. Fine-tuning keeps the folder's vocabulary, so it must be the one this module builds."""
    if init_from is None:
        tokenizer = build_tokenizer()
        return tokenizer, build_text_encoder(len(tokenizer)), build_vae(), build_transformer()
    from diffusers import WanPipeline

    try:
        pipe = WanPipeline.from_pretrained(init_from, dtype=torch.float32)
    except (OSError, ValueError) as error:
        raise SystemExit(f"--init-from {init_from}: not a model folder that loads ({error})") from None
    if pipe.tokenizer.get_vocab() != build_tokenizer().get_vocab():
        raise SystemExit(f"--init-from {init_from}: its vocabulary is not the training captions' vocabulary")
    return pipe.tokenizer, pipe.text_encoder.eval(), pipe.vae, pipe.transformer


def main(argv=None) -> None:
    # Denormals flushed to zero, as when the shipped weights were trained; the setting is the whole
    # process's (it would reach a caller's later floating-point work), so it is put back after.
    torch.set_flush_denormal(True)
    try:
        train(parse_args(argv))
    finally:
        torch.set_flush_denormal(False)


def train(args: argparse.Namespace) -> None:
    torch.manual_seed(args.seed)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    device = torch.device(args.device)
    clock = Clock(args.max_minutes)
    sizes = Sizes(
        args.vae_frame_steps,
        args.vae_clip_steps,
        args.decoder_steps,
        args.steps,
        args.vae_frame_batch,
        args.vae_clip_batch,
        args.decoder_batch,
        args.batch,
    )

    from diffusers import UniPCMultistepScheduler, WanPipeline

    shots = shot_clips(args.shots, args.width, args.height) if args.shots else []
    bank = build_bank(shots, args.procedural, args.seed, args.width, args.height, device)
    log(
        f"{bank.shot_clips} shot clips and {bank.procedural_clips} procedural clips at {args.width}x{args.height} "
        f"on {device} ({clock.minutes() * 60:.1f} s)"
    )

    tokenizer, text_encoder, vae, transformer = initial_components(args.init_from)
    if args.framewise_vae:
        vae = framewise_vae(vae)
    vae = vae.to(device)
    scale = args.init_lr_scale if args.init_from else 1.0
    vae_summary = train_vae(vae, bank, args.seed, sizes, clock, args.precision, lr=2e-3 * scale)
    decoder_summary = train_decoder(vae, bank, args.seed, sizes, clock, args.precision, lr=5e-4 * scale)
    vae_summary["frames_per_latent_frame"] = vae.config.scale_factor_temporal

    started = time.monotonic()
    if decoder_only(args, sizes):
        # The encoder is the fine-tuned folder's own and the transformer does not train: the latents,
        # and the statistics the transformer was trained to, are that folder's.
        latent_clips, cached, encode_seconds = 0, 0, 0.0
        transformer_summary = Stage("transformer", 0, "loss", 100, clock.deadline("transformer")).summary()
        log("decoder-only fine-tune: the latents and their statistics are kept from --init-from")
    else:
        cache = LatentCache(args.latent_cache, vae) if args.latent_cache else None
        raw, cached = encode_bank(vae, bank, cache=cache)
        mean, std = raw.mean(dim=(0, 2, 3, 4)), raw.std(dim=(0, 2, 3, 4))
        vae.register_to_config(latents_mean=mean.tolist(), latents_std=std.tolist())
        latents = (raw - mean.view(1, -1, 1, 1, 1)) / std.view(1, -1, 1, 1, 1)
        del raw
        latent_clips, encode_seconds = len(latents), time.monotonic() - started
        source = f" ({cached} of {len(bank.captions)} clips read from {cache.folder})" if cache else ""
        log(f"encoded {latent_clips} clips to latents {tuple(latents.shape[1:])} in {encode_seconds:.1f} s{source}")

        embeddings = caption_embeddings(tokenizer, text_encoder, sorted(set(bank.captions)) + [""])
        transformer = transformer.to(device)
        transformer_summary = train_transformer(
            transformer, latents, bank, embeddings, args.seed, sizes, clock, args.precision, lr=1e-3 * scale
        )

    scheduler = UniPCMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, num_train_timesteps=1000, flow_shift=FLOW_SHIFT
    )
    pipe = WanPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae.cpu(),
        scheduler=scheduler,
        transformer=transformer.cpu(),
    )
    pipe.save_pretrained(args.out, safe_serialization=True)
    report = training_report(
        args,
        bank,
        sizes,
        clock,
        vae_summary,
        decoder_summary,
        transformer_summary,
        encode_seconds,
        latent_clips,
        4 * cached,
    )
    (args.out / "TRAINING.json").write_text(json.dumps(report, indent=1))
    size = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    log(f"saved {args.out} ({size / 2**20:.1f} MiB) after {clock.minutes():.1f} min")


def decoder_only(args: argparse.Namespace, sizes: Sizes) -> bool:
    """Whether the run fine-tunes a trained model's decoder and nothing that shapes its latents."""
    return (
        args.init_from is not None
        and not args.framewise_vae
        and sizes.vae_frame_steps == sizes.vae_clip_steps == sizes.transformer_steps == 0
    )


def training_report(
    args,
    bank: ClipBank,
    sizes: Sizes,
    clock: Clock,
    vae: dict,
    decoder: dict,
    transformer: dict,
    encode_seconds: float,
    latent_clips: int,
    cached_latent_clips: int = 0,
) -> dict:
    device = torch.cuda.get_device_name(0) if args.device == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    cut_short = any(s["steps_done"] < s["steps"] for s in (vae, decoder, transformer))
    return {
        "seed": args.seed,
        "width": args.width,
        "height": args.height,
        "frames": FRAMES,
        "init_from": str(args.init_from) if args.init_from else None,
        "init_lr_scale": args.init_lr_scale if args.init_from else None,
        "framewise_vae": args.framewise_vae,  # made frame-wise by this run (vae.frames_per_latent_frame: as trained)
        "mix": {
            "shots_folder": str(args.shots) if args.shots else None,
            "shot_clips": bank.shot_clips,
            "procedural_clips": bank.procedural_clips,
            "shot_share": SHOT_SHARE if bank.shot_clips else 0.0,
            "augmentation": "horizontal flip (mask and track too) and time reversal, each with odds 1/2; the "
            "transformer's latents hold every clip in all four looks",
        },
        "vae": {
            **vae,
            "frame_steps": sizes.vae_frame_steps,
            "frame_batch": sizes.vae_frame_batch,
            "clip_steps": sizes.vae_clip_steps,
            "clip_batch": sizes.vae_clip_batch,
            "clip_frames": VAE_CLIP_FRAMES,
        },
        "decoder": {**decoder, "batch": sizes.decoder_batch},
        "latents": {
            "clips": latent_clips,
            "seconds": round(encode_seconds, 1),
            "cache": str(args.latent_cache) if args.latent_cache else None,
            "clips_read_from_cache": cached_latent_clips,  # of "clips": each clip's four looks count four
        },
        "transformer": {**transformer, "batch": sizes.transformer_batch},
        "cut_short": cut_short,
        "max_minutes": args.max_minutes,
        "minutes_total": round(clock.minutes(), 2),
        "device": device,
        "precision": args.precision if args.device == "cuda" else "fp32",
        "torch": torch.__version__,
    }


if __name__ == "__main__":
    main()
