"""The add-on cannot import flowmotion (no torch in Blender): its copies of the model's rules and
settings are checked against the core's here."""

import ast
import dataclasses
import importlib.util
from pathlib import Path

import pytest

from flowmotion import FlowMotionConfig
from flowmotion.video import legal_frame_count, legal_side

ADDON = Path(__file__).resolve().parents[2] / "blender_addon"


def load_shape():
    spec = importlib.util.spec_from_file_location("addon_shape", ADDON / "shape.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_size_and_count_rules_match_the_core():
    shape = load_shape()
    for value in range(1, 2200):
        assert shape.legal_side(value) == legal_side(value)
    for value in range(1, 400):
        assert shape.legal_frame_count(value) == legal_frame_count(value)


@pytest.mark.parametrize(
    "size, bounds, expected",
    [
        ((1920, 1080), (832, 0, 0), (832, 468)),
        ((72, 40), (832, 0, 0), (72, 40)),
        ((1080, 1920), (832, 0, 0), (468, 832)),
        ((640, 360), (0, 0, 0), (640, 360)),
        # At the backend's default limits a full-HD shot is sent as it is: never rounded past 1080.
        ((1920, 1080), (4096, 1920, 1080), (1920, 1080)),
        ((2048, 1152), (4096, 1920, 1080), (1920, 1080)),
        ((72, 40), (0, 64, 32), (57, 32)),
        ((4000, 10), (0, 1920, 1080), (1920, 4)),
    ],
)
def test_sent_size_fits_every_bound_and_keeps_the_aspect(size, bounds, expected):
    assert load_shape().sent_size(*size, *bounds) == expected


def addon_settings() -> dict:
    """Names and defaults of the add-on's FlowMotionSettings, read from its source."""
    tree = ast.parse((ADDON / "properties.py").read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "FlowMotionSettings")
    settings = {}
    for node in cls.body:
        if isinstance(node, ast.AnnAssign):
            default = next(k.value for k in node.annotation.keywords if k.arg == "default")
            settings[node.target.id] = ast.literal_eval(default)
    return settings


def test_addon_settings_are_core_settings_with_the_same_defaults():
    defaults = {f.name: f.default for f in dataclasses.fields(FlowMotionConfig)}
    settings = addon_settings()
    assert set(settings) <= set(defaults)
    assert {name: defaults[name] for name in settings} == settings
    # Every setting of the method is offered; the speed switches are the backend's business.
    offered = set(defaults) - {
        "skip_identical_source_cfg",
        "batch_guidance",
        "reuse_velocity_across_iterations",
        "reuse_velocity_for_euler_step",
        "max_sequence_length",
        "source_prompt",
    }
    assert offered == set(settings)


def calls(tree):
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)]


def test_operators_read_well_in_search_and_labels_are_translatable():
    operators = ast.parse((ADDON / "operators.py").read_text())
    labels = [
        node.value.value
        for node in ast.walk(operators)
        if isinstance(node, ast.Assign) and [t.id for t in node.targets if isinstance(t, ast.Name)] == ["bl_label"]
    ]
    assert len(labels) >= 10 and all("FlowMotion" in label for label in labels), labels
    # A label made with an f-string cannot be translated: dynamic text goes through words().
    for name in ("operators.py", "panels.py", "preferences.py", "properties.py"):
        tree = ast.parse((ADDON / name).read_text())
        for call in calls(tree):
            if call.func.attr in ("label", "operator", "progress", "prop", "report", "status_text_set"):
                texts = [k.value for k in call.keywords if k.arg in ("text", "message")] + call.args[1:2]
                assert not any(isinstance(t, ast.JoinedStr) for t in texts), f"{name}:{call.lineno}"
