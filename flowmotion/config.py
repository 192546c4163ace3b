"""The settings of one FlowMotion transfer, with the paper's defaults."""

from __future__ import annotations

import ast
import dataclasses
import inspect
from dataclasses import dataclass
from functools import cache

from .errors import FlowMotionError

SOURCE_MOTIONS = ("latent_prediction", "clean_latent")


@dataclass(frozen=True)
class FlowMotionConfig:
    """FlowMotion settings. The defaults are those of the paper and the authors' release."""

    num_inference_steps: int = 50
    """Denoising steps N: plain Euler steps over the pipeline scheduler's sigmas."""

    guided_steps: int = 10
    """Steps K, counted from the first, in which the latent is optimised towards the source motion."""

    optimization_steps: int = 3
    """Adam iterations M on the latent in each guided step."""

    learning_rate: float = 0.003
    """Adam learning rate for the latent optimisation."""

    latent_alignment_weight: float = 20.0
    """alpha: weight of Latent Alignment, the mean squared error between source and target motion."""

    difference_alignment_weight: float = 5.0
    """beta: weight of Difference Alignment, the error between the two motions' frame differences."""

    velocity_regularization_gamma: float = 0.1
    """gamma: how much of the velocity orthogonal to the average velocity so far is kept."""

    guidance_scale: float = 6.0
    """Classifier-free guidance scale between the prompt and the negative prompt (1 or less: no CFG)."""

    source_guidance_scale: float = 1.5
    """CFG scale of the source pass, applied between `source_prompt` and itself as the authors do."""

    source_prompt: str = ""
    """Prompt of the source pass that predicts the source's clean latent."""

    source_motion: str = "latent_prediction"
    """Source motion representation: 'latent_prediction' (one-step estimate from a noised source latent)
    or 'clean_latent' (the source latent itself: more exact motion, follows the prompt less)."""

    motion_guidance: bool = True
    """Optimise the latent towards the source motion at all; off gives plain text-to-video sampling."""

    difference_alignment: bool = True
    """Include the Difference Alignment loss."""

    velocity_regularization: bool = True
    """Regularise the velocity towards the cumulative average velocity before forming the target motion."""

    subject_alignment: bool = True
    """When the shot comes with subject masks: steer where the take's subjects are towards where the
    source's are (Subject Alignment, an addition to the paper), leaving how they look to the prompt."""

    subject_learning_rate: float = 0.03
    """Adam learning rate of Subject Alignment, which has its own optimiser beside the paper's."""

    subject_placements: int = 3
    """When the shot comes with subject masks: how many times the sampler rebuilds its clean-latent
    prediction with the take's own subject drawn where the masks put it (Subject Placement, an addition
    to the paper: alignment alone lets a subject drift, double or fade; 0: never). Each costs one more
    velocity evaluation."""

    subject_placement_from: float = 0.85
    """Noise level (sigma) of the first subject placement; the others follow evenly down to
    `subject_placement_until`. Higher places the subject before the model has drawn one."""

    subject_placement_until: float = 0.55
    """Noise level (sigma) of the last subject placement. Lower holds the subject to the masks' shape
    for longer and leaves the model less room to draw it."""

    subject_placement_first_frame: bool = False
    """Place the subject in the first latent frame too (Wan-family VAEs encode the first video frame
    alone into it). Off, that frame keeps the model's own prediction at each placement and Subject
    Alignment alone steers it: a subject placed there takes its look from one frame, and on the
    embedded model's Blender shots it loses the prompt's colour there and pulls later frames off
    with it."""

    camera_placement: bool = True
    """When the shot has no subject masks, its camera moves and motion guidance is on: at the placement noise levels
    (`subject_placements` of them, from `subject_placement_from` to `subject_placement_until`) the
    sampler rebuilds its clean-latent prediction so that every latent frame shows the middle frame's
    content moved as the playblast's camera moves (Camera Placement, an addition to the paper; the
    camera's motion is read from the playblast, the look stays the model's). Each costs one more
    velocity evaluation."""

    max_sequence_length: int = 512
    """Tokens the text encoder sees per prompt (Wan's pipeline default)."""

    source_seed: int = 0
    """Seed of the noise the source pass adds to the source latent. It is fixed per shot, apart from the
    target's seed, so a re-prompt or a new seed of the same shot can reuse the cached source motion."""

    skip_identical_source_cfg: bool = False
    """Run the source pass once: its CFG compares the source prompt with itself, an exact no-op
    (the authors run it twice; 180 -> 170 forward passes at the paper's settings, same result)."""

    batch_guidance: bool | None = False
    """Run the conditional and unconditional passes of CFG as one batch of two (same forward passes,
    fewer and larger transformer calls; equal to the unbatched result up to float rounding). None: the
    run's plan decides, batching where a pass is too small to fill the device."""

    reuse_velocity_across_iterations: bool = False
    """Evaluate a guided step's velocity once, at the latent entering the step, and use it in all of its
    Adam iterations. The gradient already treats the velocity as a constant; this also stops re-evaluating
    it as the latent moves (two passes per guided step instead of two per iteration: 180 -> 140)."""

    reuse_velocity_for_euler_step: bool = False
    """Take a guided step's Euler step with the velocity its last Adam iteration evaluated, instead of a
    fresh one at the optimised latent (two passes fewer per guided step; with no Adam iteration the Euler
    step evaluates its own)."""

    unguided_step_cache: float = 0.0
    """First-block cache threshold for the unguided steps only (0: off). A step whose first transformer
    block changes less than this (relative mean) reuses the previous step's remaining blocks; faster,
    at some quality cost."""

    def __post_init__(self) -> None:
        if self.num_inference_steps < 1:
            raise FlowMotionError(f"num_inference_steps must be at least 1, got {self.num_inference_steps}")
        if self.guided_steps < 0:
            raise FlowMotionError(f"guided_steps must be 0 or more, got {self.guided_steps}")
        if self.guided_steps > self.num_inference_steps:
            raise FlowMotionError(
                f"guided_steps ({self.guided_steps}) cannot exceed num_inference_steps ({self.num_inference_steps})"
            )
        if self.optimization_steps < 0:
            raise FlowMotionError(f"optimization_steps must be 0 or more, got {self.optimization_steps}")
        if self.learning_rate <= 0:
            raise FlowMotionError(f"learning_rate must be positive, got {self.learning_rate}")
        if self.subject_learning_rate <= 0:
            raise FlowMotionError(f"subject_learning_rate must be positive, got {self.subject_learning_rate}")
        for name in ("latent_alignment_weight", "difference_alignment_weight", "velocity_regularization_gamma"):
            if getattr(self, name) < 0:
                raise FlowMotionError(f"{name} must be 0 or more, got {getattr(self, name)}")
        if self.source_motion not in SOURCE_MOTIONS:
            raise FlowMotionError(
                f"unknown source_motion {self.source_motion!r}; choose one of {', '.join(SOURCE_MOTIONS)}"
            )
        if self.subject_placements < 0:
            raise FlowMotionError(f"subject_placements must be 0 (never) or more, got {self.subject_placements}")
        if not 0 < self.subject_placement_until <= self.subject_placement_from <= 1:
            raise FlowMotionError(
                "subject placement needs 0 < subject_placement_until <= subject_placement_from <= 1, got "
                f"{self.subject_placement_until} and {self.subject_placement_from}"
            )
        if self.unguided_step_cache < 0:
            raise FlowMotionError(f"unguided_step_cache must be 0 (off) or more, got {self.unguided_step_cache}")
        if self.max_sequence_length < 1:
            raise FlowMotionError(f"max_sequence_length must be at least 1, got {self.max_sequence_length}")

    @classmethod
    def optimized(cls, **changes) -> FlowMotionConfig:
        """The paper's method with the speed-ups that keep its result or its measured quality: one source
        pass per guided step (same result), CFG batched where the machine gains from it (equal up to
        rounding; see flowmotion.runtime.plan_runtime), and a guided step's velocity evaluated once for its
        Adam iterations (130 passes for a new shot, 120 for a re-prompt; on the embedded model the quality
        benchmark scores it the same as the faithful path, see bench/RESULTS.md)."""
        defaults = {"skip_identical_source_cfg": True, "batch_guidance": None, "reuse_velocity_across_iterations": True}
        return cls(**{**defaults, **changes})

    @property
    def placement_sigmas(self) -> tuple[float, ...]:
        """The noise levels at which a shot with subject masks has its subject placed (or, without
        masks, a moving camera its set), highest first."""
        count = self.subject_placements
        if count == 0:
            return ()
        if count == 1:
            return (self.subject_placement_from,)
        span = self.subject_placement_from - self.subject_placement_until
        return tuple(self.subject_placement_from - span * k / (count - 1) for k in range(count))

    @property
    def guided_step_count(self) -> int:
        """Steps that actually run the motion optimisation under this config."""
        return self.guided_steps if self.motion_guidance else 0

    def replace(self, **changes) -> FlowMotionConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@cache
def field_docs(cls: type = FlowMotionConfig) -> dict[str, str]:
    """The docstring written under each field of a dataclass, read from its source."""
    try:
        tree = ast.parse(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    docs: dict[str, str] = {}
    if not isinstance(tree.body[0], ast.ClassDef):
        return {}
    body = tree.body[0].body
    for node, following in zip(body, body[1:], strict=False):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[node.target.id] = " ".join(following.value.value.split())
    return docs
