"""The artist's actions. Each operator is thin: it checks, then calls the module that owns the work."""

from __future__ import annotations

import json
import os
import random
import uuid
from pathlib import Path

import bpy

from . import generation, playblast, previews, sequencer, session
from .preferences import KEY_NAME, key_folder, preferences
from .properties import SETTING_NAMES, words
from .protocol import ProtocolError
from .protocol.states import JobState


def known_limits() -> dict | None:
    """The limits the backend announced, once it has; None before (the defaults apply)."""
    link = session.current()
    return link.welcome.limits if link is not None and link.welcome is not None else None


def shot_plan(context) -> playblast.PlayblastPlan:
    scene = context.scene
    return playblast.plan(scene, scene.flowmotion.max_side, known_limits(), scene.flowmotion.long_shot)


def shot_problem(context) -> str | None:
    scene = context.scene
    if not bpy.data.filepath:
        return "save the .blend first: takes are written next to it"
    try:
        shot_plan(context)
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


def new_take_names(shot, count: int) -> list[str]:
    """Names no take of the shot has had in this list, numbered on from the highest."""
    numbers = [int(take.name[5:]) for take in shot.takes if take.name[:5] == "take_" and take.name[5:].isdigit()]
    first = max(numbers, default=0) + 1
    return [f"take_{number:03d}" for number in range(first, first + count)]


def new_seeds(shot, count: int) -> list[int]:
    """The seeds of the next takes: counting up from the locked seed, or new ones."""
    if shot.lock_seed:
        return [(shot.seed + offset) % 2**31 for offset in range(count)]
    chosen = random.sample(range(2**31), count)
    shot.seed = chosen[0]  # shown in the Seed field: Lock Seed then makes this take again
    return chosen


class FLOWMOTION_OT_generate(bpy.types.Operator):
    """Playblast the shot through the scene camera and send it to the FlowMotion backend as new takes (Esc stops)"""

    bl_idname = "flowmotion.generate"
    bl_label = "Generate FlowMotion Take"

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
        except ProtocolError as error:
            shot.status = f"not delivered: {error}"
            self.report({"ERROR"}, shot.status)
            return {"CANCELLED"}
        count = shot.variations
        names, seeds = new_take_names(shot, count), new_seeds(shot, count)
        job_ids = [f"{sequencer.safe_name(scene.name)[:24]}-{name}-{uuid.uuid4().hex[:8]}" for name in names]
        settings = shot.settings.to_dict()
        for name, job_id, seed in zip(names, job_ids, seeds, strict=True):
            take = shot.takes.add()
            take.name, take.job_id, take.prompt, take.negative_prompt = name, job_id, shot.prompt, shot.negative_prompt
            take.seed, take.state, take.address = seed, "waiting", link.address
            take.settings, take.frame_start = json.dumps(settings, sort_keys=True), scene.frame_start
        shot.active_take, shot.status = len(shot.takes) - 1, ""
        collection = shot.subject_collection.name if shot.subject_collection is not None else ""
        request = generation.Request(
            scene.name,
            tuple(job_ids),
            tuple(seeds),
            shot.prompt,
            shot.negative_prompt,
            settings,
            shot.max_side,
            shot.subjects,
            collection,
            shot.long_shot,
        )
        self.generation = generation.start(request, link)
        session.ensure_timer()
        what = names[0] if count == 1 else f"{names[0]} to {names[-1]}"
        self.report(
            {"INFO"},
            words("{}: playblasting {}, then sending to {}", what, shot_plan(context).describe(), link.address),
        )
        return {"FINISHED"}

    def invoke(self, context, event):
        result = self.execute(context)
        if result != {"FINISHED"} or context.window is None:
            return result
        wm = context.window_manager
        self.timer = wm.event_timer_add(session.RENDER_TICK_SECONDS, window=context.window)
        wm.modal_handler_add(self)
        self.generation.drive_from_modal()
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        running = self.generation
        if event.type == "TIMER" and not running.finished:
            running.advance_from_modal()
        if running.finished:
            self._close(context)
            takes = running.takes()
            if takes:
                self.report({"INFO"}, words("{}: {}", takes[0].name, takes[0].describe()))
            return {"FINISHED"}
        if event.type == "ESC" and event.value == "PRESS":
            running.abort("stopped with Esc during the playblast: nothing was sent")
            self._close(context)
            self.report({"WARNING"}, "Playblast stopped: nothing was sent")
            return {"CANCELLED"}
        if event.type == "TIMER" and context.workspace is not None:
            takes = running.takes()
            if takes:
                context.workspace.status_text_set(
                    words("FlowMotion {}: {} (Esc to stop)", takes[0].name, takes[0].describe())
                )
        return {"PASS_THROUGH"}

    def _close(self, context) -> None:
        context.window_manager.event_timer_remove(self.timer)
        if context.workspace is not None:
            context.workspace.status_text_set(None)


def selected_take(context):
    shot = context.scene.flowmotion
    if 0 <= shot.active_take < len(shot.takes):
        return shot.takes[shot.active_take]
    return None


CANCELLABLE = ("waiting", "rendering", "sending", JobState.QUEUED, JobState.RUNNING)


class FLOWMOTION_OT_cancel(bpy.types.Operator):
    """Cancel the selected take: stop its playblast, or ask the backend to drop or stop the job"""

    bl_idname = "flowmotion.cancel"
    bl_label = "Cancel FlowMotion Take"

    @classmethod
    def poll(cls, context):
        take = selected_take(context)
        if take is None or take.state not in CANCELLABLE:
            cls.poll_message_set("Select a take that is being rendered, queued or running")
            return False
        return True

    def execute(self, context):
        take = selected_take(context)
        running = generation.serving(take.job_id)
        if running is not None and not running.finished:
            names = ", ".join(t.name for t in running.takes())
            running.abort("stopped during the playblast: nothing was sent")
            self.report({"INFO"}, words("Stopped the playblast of {}: nothing was sent", names))
            return {"FINISHED"}
        was = take.describe()
        try:
            session.client(context).cancel(take.job_id)
        except ProtocolError as error:
            self.report({"ERROR"}, words("{} could not be cancelled: {}", take.name, error))
            return {"CANCELLED"}
        session.ensure_timer()
        self.report({"INFO"}, words("Asked the backend to cancel {} ({})", take.name, was))
        return {"FINISHED"}


class FLOWMOTION_OT_connect(bpy.types.Operator):
    """Connect to the FlowMotion backend of the preferences; its model, device, limits and queue show once it answers"""

    bl_idname = "flowmotion.connect"
    bl_label = "Connect to FlowMotion Backend"

    def execute(self, context):
        session.disconnect()
        try:
            link = session.client(context)
        except ProtocolError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        session.ensure_timer()
        self.report({"INFO"}, words("Connecting to {}", link.address))
        return {"FINISHED"}


class FLOWMOTION_OT_random_seed(bpy.types.Operator):
    """Pick a new random seed for the next take"""

    bl_idname = "flowmotion.random_seed"
    bl_label = "New FlowMotion Seed"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        context.scene.flowmotion.seed = random.randint(0, 2**31 - 1)
        return {"FINISHED"}


def take_frames(take) -> tuple[Path | None, list[str]]:
    """The take's folder and frames on disk, if the folder is its own."""
    folder = Path(take.folder) if take.folder else None
    if folder is None or not sequencer.owns(folder, take.job_id):
        return None, []
    return folder, sorted(p.name for p in folder.glob("frame_*.png"))


class FLOWMOTION_OT_import_take(bpy.types.Operator):
    """Put the selected take back into the Sequencer, fetching it from the backend if its frames are gone"""

    bl_idname = "flowmotion.import_take"
    bl_label = "Re-import FlowMotion Take"

    @classmethod
    def poll(cls, context):
        take = selected_take(context)
        if take is None or take.state not in (JobState.DONE, "imported"):
            cls.poll_message_set("Select a finished take")
            return False
        return True

    def execute(self, context):
        scene, take = context.scene, selected_take(context)
        folder, names = take_frames(take)
        if names:
            sequencer.remove_strip(scene, take.strip_name)
            strip = sequencer.add_strip(scene, take.name, folder, names, take.strip_properties(), take.frame_start)
            take.strip_name = strip.name
            return {"FINISHED"}
        try:
            session.client(context).fetch(take.job_id)
        except ProtocolError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        take.state = JobState.DONE
        session.ensure_timer()
        return {"FINISHED"}


class FLOWMOTION_OT_remove_take(bpy.types.Operator):
    """Remove the selected take: its strip, its entry and the frames the add-on wrote for it (after asking)"""

    bl_idname = "flowmotion.remove_take"
    bl_label = "Remove FlowMotion Take"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        return selected_take(context) is not None

    def invoke(self, context, event):
        take = selected_take(context)
        folder, names = take_frames(take)
        if not names:
            return self.execute(context)
        return context.window_manager.invoke_confirm(
            self,
            event,
            title="Remove FlowMotion Take",
            confirm_text="Remove",
            message=words("Delete {}'s {} frames in {}?", take.name, len(names), folder),
            translate=False,
        )

    def execute(self, context):
        scene, shot = context.scene, context.scene.flowmotion
        take = selected_take(context)
        running = generation.serving(take.job_id)
        if running is not None:
            running.abort("removed before anything was sent")
        elif take.state in ("sending", JobState.QUEUED, JobState.RUNNING) and session.current() is not None:
            session.current().cancel(take.job_id)
        sequencer.remove_strip(scene, take.strip_name)
        previews.remove(take)
        deleted = bool(take.folder) and sequencer.remove_take_folder(Path(take.folder), take.job_id)
        name = take.name
        shot.takes.remove(shot.active_take)
        shot.active_take = min(shot.active_take, len(shot.takes) - 1)
        self.report({"INFO"}, words("Removed {} and its frames" if deleted else "Removed {}", name))
        return {"FINISHED"}


class FLOWMOTION_OT_use_take(bpy.types.Operator):
    """Make the selected take's prompt, seed (locked) and settings the shot's, to make it again or vary it"""

    bl_idname = "flowmotion.use_take"
    bl_label = "Use FlowMotion Take's Settings"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        return selected_take(context) is not None

    def execute(self, context):
        shot, take = context.scene.flowmotion, selected_take(context)
        shot.prompt, shot.negative_prompt = take.prompt, take.negative_prompt
        shot.seed, shot.lock_seed = take.seed, True
        try:
            settings = json.loads(take.settings) if take.settings else {}
        except ValueError:
            settings = {}
        for name, value in settings.items():
            if name in SETTING_NAMES:
                setattr(shot.settings, name, value)
        self.report(
            {"INFO"}, words("The shot now uses {}'s prompt, seed {} (locked) and settings", take.name, take.seed)
        )
        return {"FINISHED"}


class FLOWMOTION_OT_open_take_folder(bpy.types.Operator):
    """Open the selected take's folder in the file browser of the system"""

    bl_idname = "flowmotion.open_take_folder"
    bl_label = "Open FlowMotion Take Folder"

    @classmethod
    def poll(cls, context):
        take = selected_take(context)
        if take is None or not take.folder or not Path(take.folder).is_dir():
            cls.poll_message_set("Select a take whose frames are on disk")
            return False
        return True

    def execute(self, context):
        return bpy.ops.wm.path_open(filepath=selected_take(context).folder)


def take_strips(scene) -> list:
    editor = scene.sequence_editor
    if editor is None:
        return []
    return [strip for strip in editor.strips_all if sequencer.STRIP_PROPERTY_PREFIX + "job_id" in strip]


class FLOWMOTION_OT_solo_take(bpy.types.Operator):
    """Compare takes: show only the selected take's strip, muting the others; again to show them all"""

    bl_idname = "flowmotion.solo_take"
    bl_label = "Solo FlowMotion Take"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        take = selected_take(context)
        editor = context.scene.sequence_editor
        if take is None or editor is None or take.strip_name not in editor.strips_all:
            cls.poll_message_set("Select a take that has a strip")
            return False
        return True

    def execute(self, context):
        take = selected_take(context)
        others = [strip for strip in take_strips(context.scene) if strip.name != take.strip_name]
        solo = not others or not all(strip.mute for strip in others)
        for strip in others:
            strip.mute = solo
        context.scene.sequence_editor.strips_all[take.strip_name].mute = False
        self.report({"INFO"}, words("Showing {} alone", take.name) if solo else words("Showing every take"))
        return {"FINISHED"}


class FLOWMOTION_OT_generate_keys(bpy.types.Operator):
    """Create this artist's CurveZMQ key pair for a secured backend"""

    bl_idname = "flowmotion.generate_keys"
    bl_label = "Generate FlowMotion Key Pair"

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
        self.report(
            {"INFO"}, words("New key pair in {}; send {} to the backend's operator", folder, Path(public_file).name)
        )
        return {"FINISHED"}


class FLOWMOTION_OT_select_subjects(bpy.types.Operator):
    """Select the objects Generate would send as the shot's subjects"""

    bl_idname = "flowmotion.select_subjects"
    bl_label = "Select FlowMotion Subjects"
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
            frames = shot_plan(context).frames
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


CLASSES = (
    FLOWMOTION_OT_generate,
    FLOWMOTION_OT_cancel,
    FLOWMOTION_OT_connect,
    FLOWMOTION_OT_random_seed,
    FLOWMOTION_OT_import_take,
    FLOWMOTION_OT_remove_take,
    FLOWMOTION_OT_use_take,
    FLOWMOTION_OT_open_take_folder,
    FLOWMOTION_OT_solo_take,
    FLOWMOTION_OT_generate_keys,
    FLOWMOTION_OT_select_subjects,
)
