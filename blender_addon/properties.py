"""What the add-on stores in the .blend: one PropertyGroup on the scene, its takes and settings."""

from __future__ import annotations

import bpy
from bpy.app.translations import pgettext_iface
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    EnumProperty,
    FloatProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

from .protocol.states import JobState, enum_items


def words(message: str, *values) -> str:
    """A message in the interface's language, with its values put in: for labels that say
    something changing (a translatable template, not an f-string)."""
    return pgettext_iface(message).format(*values)


ADDON_STATES = [
    ("waiting", "Waiting", "Waiting for the backend to answer before the playblast is made"),
    ("rendering", "Rendering", "The add-on is making the playblast and the subjects' masks"),
    ("sending", "Sending", "Sent to the backend, not confirmed yet"),
    ("imported", "Imported", "Its frames are on disk and a strip in the Video Sequencer"),
]
"""The take's states before the backend has it and after its frames land; the job's own states
in between are the protocol's JobState."""
TAKE_STATE_ITEMS = ADDON_STATES[:3] + enum_items() + ADDON_STATES[3:]
TAKE_STATES = tuple(identifier for identifier, _label, _description in TAKE_STATE_ITEMS)
DEFAULT_TAKE_STATE = "sending"


def _get_take_state(take) -> int:
    # Stored as the state's name, as the add-on always stored it: a .blend saved before the state
    # was an enum reads the same, and one saved now still opens in those versions.
    state = take.get("state", DEFAULT_TAKE_STATE)
    if state not in TAKE_STATES:
        state = DEFAULT_TAKE_STATE
    return TAKE_STATES.index(state)


def _set_take_state(take, number: int) -> None:
    take["state"] = TAKE_STATES[number]


PHASE_NAMES = {
    "encode_prompt": "reading prompt",
    "encode_source": "reading playblast",
    "source_motion": "measuring motion",
    "guided_step": "transferring motion",
    "sampling": "rendering",
    "decode": "decoding",
}


class FlowMotionSettings(bpy.types.PropertyGroup):
    """FlowMotion's settings, sent with each job; defaults are the paper's."""

    num_inference_steps: IntProperty(name="Steps", default=50, min=1, max=200, description="Denoising steps")
    guided_steps: IntProperty(
        name="Guided Steps",
        default=10,
        min=0,
        max=200,
        description="First steps in which the take is steered towards the playblast's motion",
    )
    optimization_steps: IntProperty(
        name="Iterations", default=3, min=0, max=20, description="Optimisation iterations per guided step"
    )
    learning_rate: FloatProperty(
        name="Learning Rate",
        default=0.003,
        min=1e-6,
        max=1.0,
        precision=4,
        description="Step size of the motion optimisation",
    )
    latent_alignment_weight: FloatProperty(
        name="Latent Alignment", default=20.0, min=0.0, description="Weight of matching the playblast's motion directly"
    )
    difference_alignment_weight: FloatProperty(
        name="Difference Alignment", default=5.0, min=0.0, description="Weight of matching frame-to-frame changes"
    )
    velocity_regularization_gamma: FloatProperty(
        name="Velocity Gamma", default=0.1, min=0.0, max=1.0, description="Share of off-course velocity kept"
    )
    guidance_scale: FloatProperty(
        name="Prompt Strength",
        default=6.0,
        min=0.0,
        max=30.0,
        description="Classifier-free guidance scale of the prompt",
    )
    source_guidance_scale: FloatProperty(
        name="Source Guidance",
        default=1.5,
        min=0.0,
        max=30.0,
        description="Guidance scale of the playblast's motion estimate",
    )
    source_motion: EnumProperty(
        name="Motion From",
        items=[
            ("latent_prediction", "Latent Prediction", "The paper's default: follows the prompt well"),
            ("clean_latent", "Clean Latent", "Follows complex motion more exactly, the prompt less"),
        ],
        default="latent_prediction",
    )
    motion_guidance: BoolProperty(
        name="Motion Guidance",
        default=True,
        description="Steer towards the playblast's motion (off: plain text-to-video)",
    )
    difference_alignment: BoolProperty(name="Difference Alignment", default=True)
    velocity_regularization: BoolProperty(name="Velocity Regularisation", default=True)
    subject_alignment: BoolProperty(
        name="Subject Alignment",
        default=True,
        description="Steer where the take's subjects are towards where the shot's "
        "subjects are, leaving their look to the prompt (needs subjects)",
    )
    subject_learning_rate: FloatProperty(
        name="Subject Rate", default=0.03, min=1e-6, max=1.0, precision=4, description="Step size of Subject Alignment"
    )
    subject_placements: IntProperty(
        name="Subject Placements",
        default=3,
        min=0,
        max=20,
        description="How often the take's own subject is redrawn where the shot's subjects are "
        "(needs subjects; 0: never)",
    )
    subject_placement_from: FloatProperty(
        name="Place From",
        default=0.85,
        min=0.01,
        max=1.0,
        precision=2,
        description="Noise level of the first subject placement",
    )
    subject_placement_until: FloatProperty(
        name="Place Until",
        default=0.55,
        min=0.01,
        max=1.0,
        precision=2,
        description="Noise level of the last subject placement",
    )
    subject_placement_first_frame: BoolProperty(
        name="Place First Frame",
        default=False,
        description="Also redraw the subject in the take's first frame, which the model encodes "
        "apart (needs subjects; off: the model draws it and Subject Alignment steers it)",
    )
    camera_placement: BoolProperty(
        name="Camera Placement",
        default=True,
        description="Move the take's set as the playblast's camera moves, at the placement noise levels "
        "(shots without subjects)",
    )
    source_seed: IntProperty(
        name="Source Seed",
        default=0,
        min=0,
        description="Noise seed of the playblast's motion estimate, fixed per shot",
    )
    unguided_step_cache: FloatProperty(
        name="Step Cache",
        default=0.0,
        min=0.0,
        max=1.0,
        precision=3,
        description="Reuse work across the unguided steps above this change (0: off); faster, some quality cost",
    )

    def to_dict(self) -> dict:
        return {name: getattr(self, name) for name in SETTING_NAMES}


SETTING_NAMES = tuple(FlowMotionSettings.__annotations__)


class FlowMotionTake(bpy.types.PropertyGroup):
    """One generated take of the shot."""

    job_id: StringProperty()
    prompt: StringProperty()
    negative_prompt: StringProperty()
    seed: IntProperty()
    state: EnumProperty(
        name="State",
        items=TAKE_STATE_ITEMS,
        get=_get_take_state,
        set=_set_take_state,
        description="Where the take is, from the playblast to its strip",
    )
    message: StringProperty()
    phase: StringProperty()
    step: IntProperty()
    total: IntProperty()
    eta: FloatProperty(default=-1.0)
    position: IntProperty()
    frame_count: IntProperty()
    folder: StringProperty(subtype="DIR_PATH")
    strip_name: StringProperty()
    settings: StringProperty(description="The settings the backend used, as JSON")
    subjects: StringProperty(description="The objects whose masks went with the playblast, comma-separated")
    frame_start: IntProperty(description="The scene frame the take's first frame stands for")
    address: StringProperty(description="The backend the take was sent to")
    preview_image: StringProperty(description="The image that shows the running take's newest preview")
    preview_step: IntProperty(description="The step of the newest preview, counted from 1 (0: none yet)")
    preview_total: IntProperty(description="The denoising steps of the take, as its newest preview says")

    def strip_properties(self) -> dict:
        """What the take's strip carries, so the strip alone says how it was made."""
        return {
            "prompt": self.prompt,
            "negative_prompt": self.negative_prompt,
            "seed": self.seed,
            "job_id": self.job_id,
            "settings": self.settings,
            "subjects": self.subjects,
        }

    def describe(self) -> str:
        """The take's state in words, as the panel shows it (in the interface's language)."""
        state, total = self.state, self.total
        if state == "waiting":
            return words("waiting for the backend at {}", self.address)
        if state == "rendering":
            return words("playblast {}/{}", self.step, total) if total else words("finding the subjects")
        if state == "sending":
            if self.message:  # the backend went silent: the job waits in the connection for it
                return words("sent, not confirmed yet: {}", self.message)
            return words("sent, waiting for the backend to confirm")
        if state == JobState.QUEUED:
            queued = words("queued, position {}", self.position) if self.position else words("queued")
            return words("{}; {}", queued, self.message) if self.message else queued
        if state == JobState.RUNNING and total:
            phase = words(PHASE_NAMES.get(self.phase, self.phase))
            if self.eta >= 0:
                return words("{} step {}/{}, about {} s left", phase, self.step, total, round(self.eta))
            return words("{} step {}/{}", phase, self.step, total)
        if state == "imported":
            return words("landed: {} frames from frame {}", self.frame_count, self.frame_start)
        if state == JobState.FAILED:
            # A take that never reached the backend says so itself ("not sent: ...", "not delivered: ...").
            return self.message if self.message.startswith("not ") else words("failed: {}", self.message)
        if state == JobState.CANCELLED:
            return words("cancelled: {}", self.message) if self.message else words("cancelled")
        if state == JobState.DONE and self.message:  # the frames came but could not be written
            return words("done, not imported: {}", self.message)
        return words({"running": "running", "done": "done, fetching the frames"}.get(state, state))


class FlowMotionShot(bpy.types.PropertyGroup):
    """The shot's FlowMotion state: the prompt, the settings and every take."""

    prompt: StringProperty(name="Prompt", description="What the take should show")
    negative_prompt: StringProperty(name="Negative", description="What the take should not show")
    seed: IntProperty(
        name="Seed",
        default=0,
        min=0,
        description="Noise seed of the take: the last one used, or the one to use when locked",
    )
    lock_seed: BoolProperty(
        name="Lock Seed",
        default=False,
        description="Use this seed for the next take (variations count up from it); off: every take gets a new seed",
    )
    variations: IntProperty(
        name="Variations",
        default=1,
        min=1,
        max=16,
        description="Takes one Generate asks for, each with its own seed, from one playblast",
    )
    long_shot: EnumProperty(
        name="Long Shots",
        description="What Generate does when the shot has more frames than the backend takes",
        items=[
            ("STOP", "Stop", "Generate stays off until the frame range fits the backend"),
            ("FIRST", "First Frames Only", "Send the first frames the backend takes; the take covers only those"),
        ],
        default="STOP",
    )
    max_side: IntProperty(
        name="Max Size",
        default=832,
        min=16,
        max=4096,
        subtype="PIXEL",
        description="Longest side of the playblast sent; larger outputs are scaled down",
    )
    subjects: EnumProperty(
        name="Subjects",
        description="What the take's subjects are: their silhouettes are rendered with the playblast and sent along",
        items=[
            (
                "MOVING",
                "Moving Objects",
                "Objects that move during the shot: animated, constrained, parented or deformed",
            ),
            ("COLLECTION", "Collection", "The objects of one collection"),
            ("NONE", "None", "No subjects: the motion of the whole frame, as the paper does"),
        ],
        default="MOVING",
    )
    subject_collection: PointerProperty(
        type=bpy.types.Collection,
        name="Subject Collection",
        description="The collection whose objects are the shot's subjects",
    )
    settings: PointerProperty(type=FlowMotionSettings)
    takes: CollectionProperty(type=FlowMotionTake)
    active_take: IntProperty()
    status: StringProperty(description="The last thing that went wrong, shown in the panel")


CLASSES = (FlowMotionSettings, FlowMotionTake, FlowMotionShot)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.flowmotion = PointerProperty(type=FlowMotionShot)


def unregister() -> None:
    del bpy.types.Scene.flowmotion
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
