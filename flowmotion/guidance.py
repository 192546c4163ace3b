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


def noise_prediction(z: torch.Tensor, sigma: float, velocity: torch.Tensor) -> torch.Tensor:
    """The noise the latent's path started from, as the velocity has it: eps_hat(s) = z_s + (1 - s) * v."""
    return z + (1.0 - sigma) * velocity


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


# Subject placement -------------------------------------------------------------------------------
# Subject Alignment nudges the latent; on a small model it cannot hold a subject on its track, and
# the take's subject drifts, doubles or fades. Subject placement rebuilds the clean-latent
# prediction at a few noise levels of the sampling: the frames' background, read row by row from
# the prediction itself (rows keep a horizon), with the take's own subject, read from the
# prediction where the masks put it, drawn in at the masks' positions. Colour and background stay
# the prompt's; placement comes from the shot.

PLACEMENT_STRENGTH = 1.5
"""How far past the prediction's own subject the placed subject stands out from its background."""
PLACEMENT_MIN_AREA = 3.0
"""Smallest footprint (latent positions) of a placed subject: a smaller one the model erases."""
PLACEMENT_GAMMA = 0.5
"""Coverage is raised to this power, so partly covered positions count nearly as covered ones."""
SUBJECT_SHARPNESS = 2.0
"""Positions inside the coverage weigh in the subject's look by how far they stand out, to this power."""
TOP_SHARE = 50
"""The subject's strength is that of the prediction's strongest 1 / TOP_SHARE positions ..."""
TOP_MOST = 24
"""... and of at most this many of them."""


def subject_footprint(coverage: torch.Tensor, min_area: float = PLACEMENT_MIN_AREA) -> torch.Tensor:
    """Coverage (batch, 1, frames, height, width) grown, in every frame where it shows a subject
    smaller than `min_area` positions, by a soft disc of that area around the subject's centroid."""
    height, width = coverage.shape[-2:]
    ys = torch.arange(height, dtype=coverage.dtype, device=coverage.device)[:, None]
    xs = torch.arange(width, dtype=coverage.dtype, device=coverage.device)[None, :]
    radius = (min_area / torch.pi) ** 0.5
    total = coverage.sum(dim=(3, 4), keepdim=True)
    centre_y = (coverage * ys).sum(dim=(3, 4), keepdim=True) / total.clamp(min=1e-12)
    centre_x = (coverage * xs).sum(dim=(3, 4), keepdim=True) / total.clamp(min=1e-12)
    disc = torch.exp(-((ys - centre_y) ** 2 + (xs - centre_x) ** 2) / (2 * (radius / 1.2) ** 2))
    small = (total > 1e-6) & (total < min_area)
    return torch.where(small, torch.maximum(coverage, disc), coverage)


def row_background(x: torch.Tensor) -> torch.Tensor:
    """Each row's median latent vector, (batch, channels, frames, height, 1): the background of a
    frame with a horizon, which a frame-wide median would mistake for a subject."""
    return x.median(dim=-1, keepdim=True).values


def place_subject(
    prediction: torch.Tensor,
    coverage: torch.Tensor,
    strength: float = PLACEMENT_STRENGTH,
    min_area: float = PLACEMENT_MIN_AREA,
    first_frame: bool = True,
) -> torch.Tensor:
    """The clean-latent `prediction` (batch, channels, frames, height, width) rebuilt with its subject
    where `coverage` (batch, 1, frames, height, width, in [0, 1]) puts the shot's subjects.

    Per group of latent frames (the first alone, since Wan-family VAEs encode the first video frame
    by itself, then the rest): the background is the group's mean row profile; the subject is the
    prediction's deviation from its rows inside the coverage, weighted by coverage and by how far each
    position stands out, at least as strong as the prediction's strongest positions and scaled by
    `strength`; it is added at the coverage, grown to `min_area` positions where smaller. Without
    `first_frame`, the first latent frame keeps the prediction as it is wherever later frames follow
    it (a single latent frame is placed all the same: nothing else would place its subject)."""
    cover = subject_footprint(coverage.clamp(0, 1), min_area) ** PLACEMENT_GAMMA
    rows = row_background(prediction)
    deviation = prediction - rows
    standing_out = (deviation * deviation).sum(dim=CHANNEL_DIM, keepdim=True).sqrt()
    frames = prediction.shape[FRAME_DIM]
    groups = [slice(0, 1), slice(1, frames)] if frames > 1 else [slice(0, 1)]
    placed = torch.empty_like(prediction)
    if frames > 1 and not first_frame:
        placed[:, :, :1] = prediction[:, :, :1]
        groups = groups[1:]
    for group in groups:
        weights = (cover[:, :, group] * standing_out[:, :, group] ** SUBJECT_SHARPNESS).flatten(2)  # (b, 1, n)
        vectors = deviation[:, :, group].flatten(2)  # (b, c, n)
        subject = (vectors * weights).sum(dim=2) / (weights.sum(dim=2) + PROJECTION_EPS)  # (b, c)
        strongest = standing_out[:, :, group].flatten(2)
        count = max(1, min(strongest.shape[2] // TOP_SHARE, TOP_MOST))
        floor = strongest.topk(count, dim=2).values.mean(dim=2)  # (b, 1)
        length = subject.norm(dim=1, keepdim=True)
        subject = subject / (length + PROJECTION_EPS) * torch.maximum(length, floor) * strength
        background = rows[:, :, group].mean(dim=FRAME_DIM, keepdim=True).expand_as(prediction[:, :, group])
        placed[:, :, group] = background + cover[:, :, group] * subject[:, :, None, None, None]
    return placed
