"""FlowMotion Previs: playblast a shot, send it to the FlowMotion backend, get takes in the Sequencer."""

from . import generation, operators, panels, preferences, previews, properties, reattach, session

CLASSES = preferences.CLASSES + operators.CLASSES + panels.CLASSES


def register():
    import bpy

    properties.register()
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    reattach.register()
    bpy.types.TOPBAR_MT_render.append(panels.draw_render_menu)


def unregister():
    import bpy

    bpy.types.TOPBAR_MT_render.remove(panels.draw_render_menu)
    session.stop_timer()
    generation.abort_all("stopped: the add-on was turned off during the playblast")
    session.disconnect()
    reattach.unregister()
    previews.unregister()
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
    properties.unregister()
