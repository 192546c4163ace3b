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


@pytest.mark.parametrize("width, height, max_side, expected", [
    (1920, 1080, 832, (832, 464)), (72, 40, 832, (80, 48)), (1080, 1920, 832, (464, 832)), (640, 360, 0, (640, 368)),
])
def test_playblast_size(width, height, max_side, expected):
    assert load_shape().playblast_size(width, height, max_side) == expected


def test_sampled_frames_span_the_shot():
    shape = load_shape()
    assert shape.sampled_frames(1, 9, 9) == list(range(1, 10))
    frames = shape.sampled_frames(101, 130, 29)
    assert frames[0] == 101 and frames[-1] == 130 and len(frames) == 29 and frames == sorted(frames)


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
    offered = set(defaults) - {"skip_identical_source_cfg", "batch_guidance", "reuse_velocity_across_iterations",
                               "reuse_velocity_for_euler_step", "max_sequence_length", "source_prompt"}
    assert offered == set(settings)
