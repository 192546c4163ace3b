"""The sidebars draw in both editors, and Advanced offers every FlowMotion setting."""

from .conftest import run_blender


def test_panels_draw_idle_and_running(addon_zips, tmp_path):
    report = run_blender("panels", {"zip": str(addon_zips["py311"])}, tmp_path)
    assert report["spaces"] == [["SEQUENCE_EDITOR", "FlowMotion"], ["VIEW_3D", "FlowMotion"]]
    assert report["parents"] == {
        "FLOWMOTION_PT_advanced_view3d": "FLOWMOTION_PT_main_view3d",
        "FLOWMOTION_PT_advanced_sequencer": "FLOWMOTION_PT_main_sequencer",
    }
    idle = [tuple(entry) for entry in report["idle"]]
    assert ("label", "Backend: not connected") in idle
    assert ("label", "Sends 9 frames at 72x40") in idle
    assert ("operator", "flowmotion.generate") in idle and ("operator", "flowmotion.cancel") in idle
    running = [tuple(entry) for entry in report["running"]]
    assert ("progress", 0.25, "take_001: transferring motion step 3/12, about 40 s left") in running
    assert ("label", "the backend at tcp://127.0.0.1:1 did not answer") in running
    assert [name for kind, name in report["advanced"]] == report["setting_names"]
    # Every action is in Render > FlowMotion, so F3 finds it, under a name that says whose it is.
    assert report["in_render_menu"]
    assert [name for kind, name in report["menu"]] == [
        "flowmotion.generate",
        "flowmotion.cancel",
        "flowmotion.import_take",
        "flowmotion.use_take",
        "flowmotion.solo_take",
        "flowmotion.open_take_folder",
        "flowmotion.remove_take",
        "flowmotion.select_subjects",
        "flowmotion.connect",
    ]
    assert all("FlowMotion" in label for label in report["operator_labels"].values()), report["operator_labels"]
