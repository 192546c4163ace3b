"""The FlowMotion sidebar tab, in the 3D Viewport and the Video Sequencer. Panels only draw."""

from __future__ import annotations

import bpy

from . import operators, playblast, previews, session
from .properties import SETTING_NAMES, words
from .protocol.states import JobState

TAKE_ICONS = {
    "imported": "SEQUENCE",
    JobState.FAILED: "ERROR",
    JobState.CANCELLED: "X",
    JobState.RUNNING: "RENDER_ANIMATION",
    "rendering": "RENDER_STILL",
    "sending": "EXPORT",
}


class FLOWMOTION_UL_takes(bpy.types.UIList):
    def draw_item(self, context, layout, data, take, icon, active_data, active_property, index=0, flt_flag=0):
        row = layout.row(align=True)
        row.label(text=take.name, icon=TAKE_ICONS.get(take.state, "TIME"), translate=False)
        row.label(text=take.describe(), translate=False)
        row.label(text=words("seed {}", take.seed), translate=False)


def draw_backend_state(layout) -> None:
    """What the backend said about itself: model, device, limits and queue; or why it is silent."""
    link = session.current()
    if link is None:
        row = layout.row()
        row.label(text="Backend: not connected", icon="UNLINKED")
        row.operator("flowmotion.connect", text="", icon="FILE_REFRESH")
    elif link.alive and link.welcome is not None:
        welcome = link.welcome
        limits = welcome.limits
        layout.label(text=words("{} on {}", welcome.model, welcome.device), icon="LINKED", translate=False)
        layout.label(
            text=words("Queue: {} job(s)", link.queue_length) + (words(", secured") if welcome.secure else ""),
            translate=False,
        )
        layout.label(
            text=words(
                "Takes up to {} frames at {}x{}",
                limits.get("max_frames"),
                limits.get("max_width"),
                limits.get("max_height"),
            ),
            translate=False,
        )
    else:
        row = layout.row()
        row.label(text=words("Backend: waiting for {}", link.address), icon="TIME", translate=False)
        row.operator("flowmotion.connect", text="", icon="FILE_REFRESH")
    if session.last_error():
        layout.label(text=session.last_error(), icon="ERROR", translate=False)


def draw_take_progress(layout, take) -> None:
    if take.state in (JobState.RUNNING, "rendering") and take.total:
        layout.progress(factor=take.step / take.total, type="BAR", text=words("{}: {}", take.name, take.describe()))
    else:
        icon = {JobState.FAILED: "ERROR", "imported": "CHECKMARK"}.get(take.state, "INFO")
        layout.label(text=words("{}: {}", take.name, take.describe()), icon=icon, translate=False)


PREVIEW_SCALE = 10.0
"""The preview's size in the panel, in icon widths: large enough to judge a take by."""


def draw_take_preview(layout, shot) -> None:
    """The running take's newest preview, its frames side by side: cancel it if it goes wrong."""
    take = previews.shown(shot)
    if take is None:
        return
    icon = previews.icon_of(take)
    if icon is None:
        return
    box = layout.box()
    box.label(
        text=words("{}: preview at step {}/{}", take.name, take.preview_step, take.preview_total),
        icon="IMAGE_DATA",
        translate=False,
    )
    box.template_icon(icon_value=icon.icon_id, scale=PREVIEW_SCALE)


def draw_take_actions(layout) -> None:
    row = layout.row(align=True)
    row.operator("flowmotion.import_take", text="Re-import", icon="IMPORT")
    row.operator("flowmotion.remove_take", text="Remove", icon="TRASH")
    row = layout.row(align=True)
    row.operator("flowmotion.use_take", text="Use Again", icon="DUPLICATE")
    row.operator("flowmotion.solo_take", text="Solo", icon="SOLO_ON")
    row.operator("flowmotion.open_take_folder", text="", icon="FILE_FOLDER")


class FlowMotionPanel:
    bl_region_type = "UI"
    bl_category = "FlowMotion"


class FLOWMOTION_PT_main(FlowMotionPanel):
    bl_label = "FlowMotion"

    def draw(self, context):
        layout, shot = self.layout, context.scene.flowmotion
        draw_backend_state(layout.box())
        layout.prop(shot, "prompt", text="")
        layout.prop(shot, "negative_prompt")
        row = layout.row(align=True)
        row.prop(shot, "seed")
        row.prop(shot, "lock_seed", text="", icon="LOCKED" if shot.lock_seed else "UNLOCKED")
        row.operator("flowmotion.random_seed", text="", icon="FILE_REFRESH")
        layout.prop(shot, "variations")
        layout.prop(shot, "max_side")
        row = layout.row(align=True)
        row.prop(shot, "subjects")
        row.operator("flowmotion.select_subjects", text="", icon="RESTRICT_SELECT_OFF")
        if shot.subjects == "COLLECTION":
            layout.prop(shot, "subject_collection", text="")
        layout.prop(shot, "long_shot")
        draw_plan(layout, context)
        row = layout.row(align=True)
        row.scale_y = 1.4
        row.operator("flowmotion.generate", text="Generate", icon="PLAY")
        row.operator("flowmotion.cancel", text="Cancel", icon="CANCEL")
        if shot.status:
            layout.label(text=shot.status, icon="ERROR", translate=False)
        layout.label(text="Takes")
        layout.template_list("FLOWMOTION_UL_takes", "", shot, "takes", shot, "active_take", rows=3)
        draw_take_actions(layout)
        if 0 <= shot.active_take < len(shot.takes):
            draw_take_progress(layout, shot.takes[shot.active_take])
        draw_take_preview(layout, shot)


def draw_plan(layout, context) -> None:
    """What Generate will send, checked against the backend's limits, or why it cannot."""
    if not bpy.data.filepath:
        layout.label(text="Save the .blend first: takes are written next to it", icon="ERROR")
        return
    try:
        plan = operators.shot_plan(context)
    except playblast.PlayblastError as error:
        layout.label(text=str(error), icon="ERROR", translate=False)
        return
    layout.label(text=words("Sends {}", plan.describe()), icon="RENDER_RESULT", translate=False)
    for note in plan.notes:
        layout.label(text=note, icon="INFO", translate=False)


class FLOWMOTION_PT_advanced(FlowMotionPanel):
    bl_label = "Advanced"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        settings = context.scene.flowmotion.settings
        layout = self.layout
        layout.use_property_split = True
        for name in SETTING_NAMES:
            layout.prop(settings, name)


class FLOWMOTION_MT_main(bpy.types.Menu):
    """Render > FlowMotion: the add-on's actions in a menu, so F3 search finds them by name."""

    bl_idname = "FLOWMOTION_MT_main"
    bl_label = "FlowMotion"

    def draw(self, context):
        layout = self.layout
        for idname in (
            "flowmotion.generate",
            "flowmotion.cancel",
            "flowmotion.import_take",
            "flowmotion.use_take",
            "flowmotion.solo_take",
            "flowmotion.open_take_folder",
            "flowmotion.remove_take",
            "flowmotion.select_subjects",
            "flowmotion.connect",
        ):
            layout.operator(idname)


def draw_render_menu(self, context) -> None:
    self.layout.separator()
    self.layout.menu("FLOWMOTION_MT_main")


def _space(base, space: str, suffix: str, parent: str | None = None):
    attributes = {"bl_space_type": space, "bl_idname": f"FLOWMOTION_PT_{suffix}"}
    if parent:
        attributes["bl_parent_id"] = parent
    return type(f"FLOWMOTION_PT_{suffix}", (base, bpy.types.Panel), attributes)


CLASSES = (
    FLOWMOTION_UL_takes,
    FLOWMOTION_MT_main,
    _space(FLOWMOTION_PT_main, "VIEW_3D", "main_view3d"),
    _space(FLOWMOTION_PT_advanced, "VIEW_3D", "advanced_view3d", "FLOWMOTION_PT_main_view3d"),
    _space(FLOWMOTION_PT_main, "SEQUENCE_EDITOR", "main_sequencer"),
    _space(FLOWMOTION_PT_advanced, "SEQUENCE_EDITOR", "advanced_sequencer", "FLOWMOTION_PT_main_sequencer"),
)
