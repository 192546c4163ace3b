"""The maths of FlowMotion as small pure functions over latent tensors.

Latents are laid out as diffusers' Wan uses them: (batch, channels, frames, height, width).
Flow-matching convention: z_s = (1 - s) * z0 + s * eps and the network predicts v ~ eps - z0.
"""

from __future__ import annotations

import torch

CHANNEL_DIM = 1
FRAME_DIM = 2
PROJECTION_EPS = 1e-8


def latent_prediction(z: torch.Tensor, sigma: float, velocity: torch.Tensor) -> torch.Tensor:
    """One-step estimate of the clean latent: x0_hat(s) = z_s - s * v."""
    return z - sigma * velocity


def noised_latent(z0: torch.Tensor, sigma: float, noise: torch.Tensor) -> torch.Tensor:
    """Forward flow-matching noising: z_s = (1 - s) * z0 + s * eps."""
    return (1.0 - sigma) * z0 + sigma * noise


def classifier_free_guidance(cond: torch.Tensor, uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance as diffusers writes it: uncond + scale * (cond - uncond)."""
    return uncond + scale * (cond - uncond)


def average_velocity(z_i: torch.Tensor, z_1: torch.Tensor, sigma_i: float, sigma_0: float) -> torch.Tensor:
    """Cumulative average velocity from the initial noise to the latent entering step i."""
    return (z_i - z_1) / (sigma_i - sigma_0)


def regularize_velocity(velocity: torch.Tensor, reference: torch.Tensor, gamma: float) -> torch.Tensor:
    """Keep the velocity's component along `reference` and a `gamma` share of the rest.

    The projection is per latent position (frame, row, column), over the channel dimension:
    v_par = <v, ref>_c / (|ref|^2_c + eps) * ref, v_reg = v_par + gamma * (v - v_par).
    """
    dot = (velocity * reference).sum(dim=CHANNEL_DIM, keepdim=True)
    norm_sq = (reference * reference).sum(dim=CHANNEL_DIM, keepdim=True)
    parallel = dot / (norm_sq + PROJECTION_EPS) * reference
    return parallel + gamma * (velocity - parallel)


def frame_differences(x: torch.Tensor) -> torch.Tensor:
    """D(x): absolute differences between latent frames, stacked along the frame dimension.

    First the F-1 consecutive differences |x_f - x_(f-1)|, then for every frame f (in order) the
    differences |x_f - x_g| against every other frame g (in order): F-1 + F(F-1) entries.
    """
    frames = x.shape[FRAME_DIM]
    consecutive = (x[:, :, 1:] - x[:, :, :-1]).abs()
    pairwise = (x.unsqueeze(3) - x.unsqueeze(2)).abs()  # [b, c, f, g, h, w] = |x_f - x_g|
    off_diagonal = ~torch.eye(frames, dtype=torch.bool, device=x.device)
    f_index, g_index = off_diagonal.nonzero(as_tuple=True)
    pairs = pairwise[:, :, f_index, g_index]
    return torch.cat([consecutive, pairs], dim=FRAME_DIM)


def latent_alignment_loss(source_motion: torch.Tensor, target_motion: torch.Tensor) -> torch.Tensor:
    """LA: mean squared error between the source and the target motion representations."""
    return torch.mean((source_motion - target_motion) ** 2)


def difference_alignment_loss(source_motion: torch.Tensor, target_motion: torch.Tensor) -> torch.Tensor:
    """DA: mean squared error between the frame differences of the two motion representations."""
    if source_motion.shape[FRAME_DIM] < 2:
        # A single latent frame has no differences; the loss is zero but stays in the graph.
        return (target_motion * 0).sum()
    return torch.mean((frame_differences(source_motion) - frame_differences(target_motion)) ** 2)


def motion_loss(
    source_motion: torch.Tensor,
    target_motion: torch.Tensor,
    latent_weight: float,
    difference_weight: float,
) -> torch.Tensor:
    """alpha * LA + beta * DA; a weight of zero skips its term entirely."""
    loss = latent_weight * latent_alignment_loss(source_motion, target_motion)
    if difference_weight:
        loss = loss + difference_weight * difference_alignment_loss(source_motion, target_motion)
    return loss


# Subject alignment -------------------------------------------------------------------------------
# The paper aligns the whole latent, so the take is pulled towards the source's look as well as its
# motion: a grey Workbench playblast pulls a coloured scene towards grey. Subject alignment moves
# only where things are. The source gives, for every latent position, the share of it covered by
# the shot's subjects (a mask the host renders); the target's counterpart is how far each position's
# latent vector stands out from its frame's background. Both are divided by their frame's mean, so
# neither colour, brightness nor contrast enters the loss: only placement.

MAP_EPS = 1e-3


def per_frame_normalised(values: torch.Tensor) -> torch.Tensor:
    """Divide a (batch, 1, frames, height, width) map by each frame's mean (plus a small epsilon)."""
    return values / (values.mean(dim=(3, 4), keepdim=True) + MAP_EPS)


def objectness(x: torch.Tensor) -> torch.Tensor:
    """How far each latent position stands out from its frame: the channel-wise distance to the
    frame's median latent vector, (batch, 1, frames, height, width)."""
    background = x.flatten(3).median(dim=3).values[..., None, None]
    return ((x - background) ** 2).sum(dim=CHANNEL_DIM, keepdim=True).add(1e-6).sqrt()


def subject_alignment_loss(subject_coverage: torch.Tensor, target_motion: torch.Tensor) -> torch.Tensor:
    """SA: mean squared error between where the subjects are in the source (coverage of each latent
    position, in [0, 1]) and where the target's latent stands out, both normalised per frame."""
    return torch.mean((per_frame_normalised(subject_coverage) - per_frame_normalised(objectness(target_motion))) ** 2)
