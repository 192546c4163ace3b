import dataclasses

import pytest

from flowmotion import FlowMotionConfig, FlowMotionError, forward_pass_count
from flowmotion.config import field_docs


def test_defaults_are_the_papers():
    c = FlowMotionConfig()
    assert (c.num_inference_steps, c.guided_steps, c.optimization_steps) == (50, 10, 3)
    assert (c.learning_rate, c.latent_alignment_weight, c.difference_alignment_weight) == (0.003, 20.0, 5.0)
    assert (c.velocity_regularization_gamma, c.guidance_scale, c.source_guidance_scale) == (0.1, 6.0, 1.5)
    assert c.source_motion == "latent_prediction" and c.source_prompt == ""
    assert c.motion_guidance and c.difference_alignment and c.velocity_regularization


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        FlowMotionConfig().guided_steps = 3


def test_every_field_is_documented():
    docs = field_docs(FlowMotionConfig)
    assert {f.name for f in dataclasses.fields(FlowMotionConfig)} == set(docs)
    assert all(len(text) > 10 for text in docs.values())


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"num_inference_steps": 0}, "num_inference_steps must be at least 1"),
        ({"num_inference_steps": -5, "guided_steps": 0}, "num_inference_steps"),
        ({"guided_steps": 51}, "guided_steps (51) cannot exceed num_inference_steps (50)"),
        ({"guided_steps": -1}, "guided_steps"),
        ({"optimization_steps": -1}, "optimization_steps"),
        ({"learning_rate": 0.0}, "learning_rate must be positive"),
        ({"difference_alignment_weight": -1.0}, "difference_alignment_weight"),
        ({"source_motion": "inversion"}, "unknown source_motion 'inversion'"),
    ],
)
def test_bad_settings_are_refused_with_the_field_named(changes, words):
    with pytest.raises(FlowMotionError) as error:
        FlowMotionConfig(**changes)
    assert words in str(error.value)


def test_forward_pass_formula_for_the_papers_settings():
    assert forward_pass_count(FlowMotionConfig()) == 10 * (2 + 3 * 2 + 2) + 40 * 2 == 180
    assert forward_pass_count(FlowMotionConfig(source_motion="clean_latent")) == 160
    assert forward_pass_count(FlowMotionConfig(motion_guidance=False)) == 100
    assert forward_pass_count(FlowMotionConfig(guidance_scale=1.0, source_guidance_scale=1.0)) == 10 * 5 + 40


def test_forward_pass_formula_with_the_velocity_reused():
    reuse = FlowMotionConfig(skip_identical_source_cfg=True, reuse_velocity_across_iterations=True)
    assert forward_pass_count(reuse) == 10 * (1 + 2 + 2) + 40 * 2 == 130
    assert forward_pass_count(reuse, source_cached=True) == 120
    both = reuse.replace(reuse_velocity_for_euler_step=True)
    assert (forward_pass_count(both), forward_pass_count(both, source_cached=True)) == (110, 100)
    assert forward_pass_count(FlowMotionConfig(reuse_velocity_across_iterations=True)) == 10 * 6 + 80
