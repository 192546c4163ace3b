"""A job's FlowMotion settings, checked when it is submitted, before anything is stored or run.

The settings a job may carry are the fields of `FlowMotionConfig`, read from the class itself, so a
setting added there is checked here without a change: its kind (an integer, a number, true or
false, text) comes from its type. Every integer setting also needs a range below, because an
integer can size an allocation (steps, tokens): a new one cannot be set over the protocol until it
has one. Past these checks the config is built, so its own rules (guided_steps at most
num_inference_steps, a positive learning rate, ...) apply too.
"""

from __future__ import annotations

import dataclasses
import math
import typing

from flowmotion import FlowMotionConfig, FlowMotionError
from protocol import ProtocolError
from protocol import errors as codes
from protocol.messages import MAX_SEED

INTEGER_RANGES = {
    "num_inference_steps": (1, 1000),
    "guided_steps": (0, 1000),
    "optimization_steps": (0, 100),
    "max_sequence_length": (1, 512),
    "source_seed": (0, MAX_SEED),
    "subject_placements": (0, 20),
}
"""Smallest and largest value of each integer setting. 1000 denoising steps is twenty times the
paper's 50; 100 Adam iterations per guided step is over thirty times its 3; 512 tokens is what
Wan's text encoder was trained on and its pipeline's default; 20 subject placements is over six
times the default 3, each one more velocity evaluation."""


def job_config(settings: dict) -> FlowMotionConfig:
    """The backend runs the method with the speed-ups that keep the result; a job's settings override."""
    return FlowMotionConfig.optimized(**settings)


def setting_kinds() -> dict[str, type]:
    """Each setting's name and Python type, as FlowMotionConfig declares them. An optional setting
    (`bool | None`: None leaves the choice to the run) is set over the protocol by its value's kind,
    since the protocol carries no nil settings."""
    hints = typing.get_type_hints(FlowMotionConfig)
    return {f.name: _without_none(hints[f.name]) for f in dataclasses.fields(FlowMotionConfig) if f.init}


def _without_none(kind):
    arguments = [a for a in typing.get_args(kind) if a is not type(None)]
    return arguments[0] if len(arguments) == 1 and type(None) in typing.get_args(kind) else kind


def check_settings(settings: dict) -> FlowMotionConfig:
    """The config a job with these settings runs with; ProtocolError(bad_field) on 'settings'
    naming the setting and what it may be."""
    kinds = setting_kinds()
    for name, value in settings.items():
        if name not in kinds:
            _refuse(f"unknown setting {_shown(name)}; the settings are {', '.join(sorted(kinds))}")
        _check_one(name, value, kinds[name])
    try:
        return job_config(settings)
    except FlowMotionError as error:
        _refuse(str(error))


def _check_one(name: str, value, kind: type) -> None:
    is_bool = isinstance(value, bool)
    if kind is bool:
        if not is_bool:
            _refuse(f"{name} must be true or false, got {_shown(value)}")
    elif kind is int:
        if name not in INTEGER_RANGES:
            _refuse(f"{name} cannot be set on this backend: it has no range for it")
        low, high = INTEGER_RANGES[name]
        if is_bool or not isinstance(value, int) or not low <= value <= high:
            _refuse(f"{name} must be an integer from {low} to {high}, got {_shown(value)}")
    elif kind is float:
        if is_bool or not isinstance(value, (int, float)) or not math.isfinite(value):
            _refuse(f"{name} must be a finite number, got {_shown(value)}")
    elif kind is str:
        if not isinstance(value, str):
            _refuse(f"{name} must be text, got {_shown(value)}")
    else:
        _refuse(f"{name} cannot be set over the protocol")


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _refuse(reason: str) -> typing.NoReturn:
    raise ProtocolError(codes.BAD_FIELD, f"field 'settings': {reason}", "settings")
