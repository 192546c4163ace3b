"""The add-on's preferences: where the backend is, and the keys for a secured one."""

from __future__ import annotations

from pathlib import Path

import bpy
from bpy.props import FloatProperty, StringProperty

KEY_FOLDER = "keys"
KEY_NAME = "artist"


class FlowMotionPreferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    address: StringProperty(
        name="Backend",
        default="tcp://127.0.0.1:5599",
        description="ZeroMQ address of flowmotion-backend, e.g. tcp://gpu-box:5599",
    )
    server_public_key: StringProperty(
        name="Server Key", default="", description="The public key the backend prints at start (secured backends)"
    )
    client_public_key: StringProperty(
        name="Your Public Key", default="", description="Give this to whoever runs the backend to be allowed in"
    )
    client_secret_file: StringProperty(name="Your Secret Key File", default="", subtype="FILE_PATH")
    connect_timeout: FloatProperty(
        name="Connect Timeout",
        default=5.0,
        min=0.5,
        max=120.0,
        unit="TIME_ABSOLUTE",
        description="Seconds to wait for the backend before reporting it unreachable",
    )

    def draw(self, context):
        layout = self.layout
        from .panels import draw_backend_state

        layout.prop(self, "address")
        layout.prop(self, "connect_timeout")
        box = layout.box()
        box.operator("flowmotion.connect", text="Test Connection", icon="PLUGIN")
        draw_backend_state(box)
        if not getattr(bpy.app, "online_access", True):
            box.label(text="Online access is off: only a backend on this machine is contacted", icon="INFO")
            box.label(text="Allow it in Preferences > System > Network > Allow Online Access")
        box = layout.box()
        box.label(text="Secured backend (any address but this machine's)")
        box.prop(self, "server_public_key")
        row = box.row()
        row.prop(self, "client_public_key")
        row.operator("flowmotion.generate_keys", text="", icon="KEYINGSET")
        if self.client_public_key:
            box.label(text="Send your public key to the backend's operator for its allowed_clients folder")


def preferences(context) -> FlowMotionPreferences:
    return context.preferences.addons[__package__].preferences


def key_folder() -> Path:
    return Path(bpy.utils.extension_path_user(__package__, path=KEY_FOLDER, create=True))


def client_keys(prefs: FlowMotionPreferences) -> tuple[bytes | None, bytes | None]:
    """The artist's key pair from the secret key file, or (None, None) when there is none."""
    if not prefs.client_secret_file:
        return None, None
    import zmq.auth

    return zmq.auth.load_certificate(prefs.client_secret_file)


CLASSES = (FlowMotionPreferences,)
