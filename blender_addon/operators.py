"""The artist's actions. Each operator is thin: it checks, then calls the module that owns the work."""

from __future__ import annotations

import os
import random
import shutil
import uuid
from pathlib import Path

import bpy

from . import playblast, sequencer, session
from .preferences import KEY_NAME, key_folder, preferences
from .protocol import ProtocolError


def shot_problem(context) -> str | None:
    scene = context.scene
    try:
        playblast.plan(scene, scene.flowmotion.max_side)
    except playblast.PlayblastError as error:
        return str(error)
    if not scene.flowmotion.prompt.strip():
        return "type a prompt first"
    if scene.flowmotion.subjects == "COLLECTION" and scene.flowmotion.subject_collection is None:
        return "choose the subject collection, or set Subjects to Moving Objects"
    return None


def describe_subjects(names: list[str]) -> str:
    if not names:
        return "no subjects: motion of the whole frame"
    return "subjects: " + ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def new_take_name(shot) -> str:
    used = {take.name for take in shot.takes}
    number = len(shot.takes) + 1
    while f"take_{number:03d}" in used:
        number += 1
    return f"take_{number:03d}"


class FLOWMOTION_OT_generate(bpy.types.Operator):
    """Playblast the shot through the scene camera and send it to the FlowMotion backend as a new take"""
    bl_idname = "flowmotion.generate"
    bl_label = "Generate"

    @classmethod
    def poll(cls, context):
        problem = shot_problem(context)
        if problem:
            cls.poll_message_set(problem[0].upper() + problem[1:])
        return problem is None

    def execute(self, context):
        scene, shot = context.scene, context.scene.flowmotion
        try:
            link = session.client(context)
            wm = context.window_manager
            wm.progress_begin(0, 1)
            try:
                blast = playblast.render(scene, shot.max_side, subjects=shot.subjects,
                                         collection=shot.subject_collection,
                                         on_frame=lambda done, total: wm.progress_update(done / total))
            finally:
                wm.progress_end()
            frames = [path.read_bytes() for path in blast.frames]
            masks = [path.read_bytes() for path in blast.masks]
            shutil.rmtree(blast.frames[0].parent, ignore_errors=True)
            name = new_take_name(shot)
            job_id = f"{sequencer.safe_name(scene.name)[:24]}-{name}-{uuid.uuid4().hex[:8]}"
            link.submit(job_id, frames, shot.prompt, masks=masks, negative_prompt=shot.negative_prompt, seed=shot.seed,
                        shot=scene.name, fps=scene.render.fps / scene.render.fps_base,
                        settings=shot.settings.to_dict())
        except (playblast.PlayblastError, ProtocolError, OSError) as error:
            shot.status = str(error)
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        take = shot.takes.add()
        take.name, take.job_id, take.prompt = name, job_id, shot.prompt
        take.negative_prompt, take.seed, take.state = shot.negative_prompt, shot.seed, "sending"
        take.subjects = ", ".join(blast.subjects)
        shot.active_take = len(shot.takes) - 1
        shot.status = ""
        session.ensure_timer()
        self.report({"INFO"}, f"{name}: sent {len(frames)} frames to {link.address}, {describe_subjects(blast.subjects)}")
        return {"FINISHED"}


def selected_take(context):
    shot = context.scene.flowmotion
    if 0 <= shot.active_take < len(shot.takes):
        return shot.takes[shot.active_take]
    return None


class FLOWMOTION_OT_cancel(bpy.types.Operator):
    """Cancel the selected take on the backend"""
    bl_idname = "flowmotion.cancel"
    bl_label = "Cancel"

    @classmethod
    def poll(cls, context):
        take = selected_take(context)
        if take is None or take.state not in ("sending", "queued", "running"):
            cls.poll_message_set("Select a take that is queued or running")
            return False
        return True

    def execute(self, context):
        take = selected_take(context)
        try:
            session.client(context).cancel(take.job_id)
        except ProtocolError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        session.ensure_timer()
        return {"FINISHED"}


class FLOWMOTION_OT_connect(bpy.types.Operator):
    """Connect to the FlowMotion backend set in the preferences"""
    bl_idname = "flowmotion.connect"
    bl_label = "Connect"

    def execute(self, context):
        session.disconnect()
        try:
            session.client(context)
        except ProtocolError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        session.ensure_timer()
        return {"FINISHED"}


class FLOWMOTION_OT_random_seed(bpy.types.Operator):
    """Pick a new random seed for the next take"""
    bl_idname = "flowmotion.random_seed"
    bl_label = "Random Seed"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        context.scene.flowmotion.seed = random.randint(0, 2**31 - 1)
        return {"FINISHED"}


class FLOWMOTION_OT_import_take(bpy.types.Operator):
    """Put the selected take back into the Sequencer, fetching it from the backend if its frames are gone"""
    bl_idname = "flowmotion.import_take"
    bl_label = "Re-import Take"

    @classmethod
    def poll(cls, context):
        take = selected_take(context)
        if take is None or take.state not in ("done", "imported"):
            cls.poll_message_set("Select a finished take")
            return False
        return True

    def execute(self, context):
        scene, take = context.scene, selected_take(context)
        folder = Path(take.folder) if take.folder else None
        names = sorted(p.name for p in folder.glob("frame_*.png")) if folder and folder.is_dir() else []
        if names:
            sequencer.remove_strip(scene, take.strip_name)
            strip = sequencer.add_strip(scene, take.name, folder, names, take.strip_properties())
            take.strip_name = strip.name
            return {"FINISHED"}
        try:
            session.client(context).fetch(take.job_id)
        except ProtocolError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        take.state = "done"
        session.ensure_timer()
        return {"FINISHED"}


class FLOWMOTION_OT_remove_take(bpy.types.Operator):
    """Remove the selected take: its strip, its entry and the frames the add-on wrote for it"""
    bl_idname = "flowmotion.remove_take"
    bl_label = "Remove Take"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        return selected_take(context) is not None

    def execute(self, context):
        scene, shot = context.scene, context.scene.flowmotion
        take = selected_take(context)
        if take.state in ("sending", "queued", "running") and session.current() is not None:
            session.current().cancel(take.job_id)
        sequencer.remove_strip(scene, take.strip_name)
        folder = Path(take.folder) if take.folder else None
        if folder and folder.is_dir() and sequencer.is_take_folder(folder):
            shutil.rmtree(folder, ignore_errors=True)
        shot.takes.remove(shot.active_take)
        shot.active_take = min(shot.active_take, len(shot.takes) - 1)
        return {"FINISHED"}


class FLOWMOTION_OT_generate_keys(bpy.types.Operator):
    """Create this artist's CurveZMQ key pair for a secured backend"""
    bl_idname = "flowmotion.generate_keys"
    bl_label = "Generate Key Pair"

    def execute(self, context):
        import zmq.auth

        prefs = preferences(context)
        folder = key_folder()
        for old in folder.glob(f"{KEY_NAME}.key*"):
            old.unlink()
        # The secret file is private from its first byte, not only after a chmod.
        previous = os.umask(0o077)
        try:
            public_file, secret_file = zmq.auth.create_certificates(folder, KEY_NAME)
        finally:
            os.umask(previous)
        Path(public_file).chmod(0o644)
        Path(secret_file).chmod(0o600)
        prefs.client_public_key = zmq.auth.load_certificate(public_file)[0].decode("ascii")
        prefs.client_secret_file = str(secret_file)
        session.disconnect()
        self.report({"INFO"}, f"new key pair in {folder}; send {Path(public_file).name} to the backend's operator")
        return {"FINISHED"}


class FLOWMOTION_OT_select_subjects(bpy.types.Operator):
    """Select the objects Generate would send as the shot's subjects"""
    bl_idname = "flowmotion.select_subjects"
    bl_label = "Select Subjects"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        if context.scene.camera is None:
            cls.poll_message_set("The scene has no camera")
            return False
        return True

    def execute(self, context):
        scene, shot = context.scene, context.scene.flowmotion
        try:
            frames = playblast.plan(scene, shot.max_side).frames
            with playblast.preserved_settings(scene):  # the survey steps through the shot's frames
                chosen = playblast.subject_objects(scene, shot.subjects, shot.subject_collection, frames)
        except playblast.PlayblastError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        for obj in context.view_layer.objects:
            obj.select_set(obj in chosen)
        if chosen:
            context.view_layer.objects.active = chosen[0]
        self.report({"INFO"}, describe_subjects([obj.name for obj in chosen]))
        return {"FINISHED"}


CLASSES = (FLOWMOTION_OT_generate, FLOWMOTION_OT_cancel, FLOWMOTION_OT_connect, FLOWMOTION_OT_random_seed,
           FLOWMOTION_OT_import_take, FLOWMOTION_OT_remove_take, FLOWMOTION_OT_generate_keys,
           FLOWMOTION_OT_select_subjects)
