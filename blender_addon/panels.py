"""The FlowMotion sidebar tab, in the 3D Viewport and the Video Sequencer. Panels only draw."""

from __future__ import annotations

import bpy

from . import playblast, session
from .properties import SETTING_NAMES

PHASE_NAMES = {"encode_prompt": "Reading prompt", "encode_source": "Reading playblast",
               "source_motion": "Measuring motion", "guided_step": "Transferring motion", "sampling": "Rendering",
               "decode": "Decoding"}


class FLOWMOTION_UL_takes(bpy.types.UIList):
    def draw_item(self, context, layout, data, take, icon, active_data, active_property, index=0, flt_flag=0):
        icons = {"imported": "SEQUENCE", "failed": "ERROR", "cancelled": "X", "running": "RENDER_ANIMATION"}
        row = layout.row(align=True)
        row.label(text=take.name, icon=icons.get(take.state, "TIME"))
        row.label(text=take.prompt)
        row.label(text=f"seed {take.seed}")


def draw_backend(layout, context) -> None:
    link = session.current()
    box = layout.box()
    if link is None:
        row = box.row()
        row.label(text="Backend: not connected", icon="UNLINKED")
        row.operator("flowmotion.connect", text="", icon="FILE_REFRESH")
    elif link.alive and link.welcome is not None:
        welcome = link.welcome
        box.label(text=f"{welcome.model} on {welcome.device}", icon="LINKED")
        box.label(text=f"Queue: {link.queue_length} job(s)" + (" · secured" if welcome.secure else ""))
    else:
        row = box.row()
        row.label(text=f"Backend: waiting for {link.address}", icon="TIME")
        row.operator("flowmotion.connect", text="", icon="FILE_REFRESH")
    if session.last_error():
        box.label(text=session.last_error(), icon="ERROR")


def draw_take_progress(layout, take) -> None:
    if take.state == "running" and take.total:
        eta = f", about {take.eta:.0f} s left" if take.eta >= 0 else ""
        text = f"{PHASE_NAMES.get(take.phase, take.phase)} {take.step}/{take.total}{eta}"
        layout.progress(factor=take.step / take.total, type="BAR", text=text)
    elif take.state == "queued":
        layout.label(text=f"{take.name}: queued, position {take.position}", icon="TIME")
    elif take.state == "sending":
        layout.label(text=f"{take.name}: sending...", icon="EXPORT")
    if take.message:
        layout.label(text=take.message, icon="INFO" if take.state == "imported" else "ERROR")


class FlowMotionPanel:
    bl_region_type = "UI"
    bl_category = "FlowMotion"


class FLOWMOTION_PT_main(FlowMotionPanel):
    bl_label = "FlowMotion"

    def draw(self, context):
        layout, shot = self.layout, context.scene.flowmotion
        draw_backend(layout, context)
        layout.prop(shot, "prompt", text="")
        layout.prop(shot, "negative_prompt")
        row = layout.row(align=True)
        row.prop(shot, "seed")
        row.operator("flowmotion.random_seed", text="", icon="FILE_REFRESH")
        layout.prop(shot, "max_side")
        row = layout.row(align=True)
        row.prop(shot, "subjects")
        row.operator("flowmotion.select_subjects", text="", icon="RESTRICT_SELECT_OFF")
        if shot.subjects == "COLLECTION":
            layout.prop(shot, "subject_collection", text="")
        try:
            plan = playblast.plan(context.scene, shot.max_side)
            layout.label(text=f"Sends {plan.describe()} (shot: {plan.shot_frames} frames)", icon="RENDER_RESULT")
        except playblast.PlayblastError as error:
            layout.label(text=str(error), icon="ERROR")
        row = layout.row(align=True)
        row.scale_y = 1.4
        row.operator("flowmotion.generate", icon="PLAY")
        row.operator("flowmotion.cancel", icon="CANCEL")
        if shot.status:
            layout.label(text=shot.status, icon="ERROR")
        layout.label(text="Takes")
        layout.template_list("FLOWMOTION_UL_takes", "", shot, "takes", shot, "active_take", rows=3)
        row = layout.row(align=True)
        row.operator("flowmotion.import_take", icon="IMPORT")
        row.operator("flowmotion.remove_take", icon="TRASH")
        if 0 <= shot.active_take < len(shot.takes):
            draw_take_progress(layout, shot.takes[shot.active_take])


class FLOWMOTION_PT_advanced(FlowMotionPanel):
    bl_label = "Advanced"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        settings = context.scene.flowmotion.settings
        layout = self.layout
        layout.use_property_split = True
        for name in SETTING_NAMES:
            layout.prop(settings, name)


def _space(base, space: str, suffix: str, parent: str | None = None):
    attributes = {"bl_space_type": space, "bl_idname": f"FLOWMOTION_PT_{suffix}"}
    if parent:
        attributes["bl_parent_id"] = parent
    return type(f"FLOWMOTION_PT_{suffix}", (base, bpy.types.Panel), attributes)


CLASSES = (
    FLOWMOTION_UL_takes,
    _space(FLOWMOTION_PT_main, "VIEW_3D", "main_view3d"),
    _space(FLOWMOTION_PT_advanced, "VIEW_3D", "advanced_view3d", "FLOWMOTION_PT_main_view3d"),
    _space(FLOWMOTION_PT_main, "SEQUENCE_EDITOR", "main_sequencer"),
    _space(FLOWMOTION_PT_advanced, "SEQUENCE_EDITOR", "advanced_sequencer", "FLOWMOTION_PT_main_sequencer"),
)
