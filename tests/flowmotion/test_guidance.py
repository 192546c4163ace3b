import pytest
import torch

from flowmotion import guidance


def test_latent_prediction_and_noising_are_inverse_under_the_true_velocity():
    z0 = torch.randn(1, 4, 3, 2, 2)
    eps = torch.randn_like(z0)
    sigma = 0.7
    z = guidance.noised_latent(z0, sigma, eps)
    assert torch.allclose(z, 0.3 * z0 + 0.7 * eps)
    # With v = eps - z0 the one-step estimate recovers z0 exactly.
    assert torch.allclose(guidance.latent_prediction(z, sigma, eps - z0), z0, atol=1e-6)


def test_classifier_free_guidance_matches_diffusers_form():
    cond, uncond = torch.tensor([3.0, 1.0]), torch.tensor([1.0, 1.0])
    assert torch.equal(guidance.classifier_free_guidance(cond, uncond, 6.0), torch.tensor([13.0, 1.0]))


def test_average_velocity_is_displacement_over_sigma_change():
    z1 = torch.zeros(1, 2, 1, 1, 1)
    zi = torch.full((1, 2, 1, 1, 1), 0.5)
    assert torch.allclose(guidance.average_velocity(zi, z1, 0.75, 1.0), torch.full_like(zi, -2.0))


def test_velocity_regularization_projects_per_position_over_channels():
    # Two channels, one frame, one row, two columns: each column has its own reference direction.
    v = torch.zeros(1, 2, 1, 1, 2)
    ref = torch.zeros(1, 2, 1, 1, 2)
    v[0, :, 0, 0, 0] = torch.tensor([3.0, 4.0])
    ref[0, :, 0, 0, 0] = torch.tensor([1.0, 0.0])  # parallel part (3, 0), orthogonal (0, 4)
    v[0, :, 0, 0, 1] = torch.tensor([2.0, 2.0])
    ref[0, :, 0, 0, 1] = torch.tensor([0.0, 5.0])  # parallel part (0, 2), orthogonal (2, 0)
    out = guidance.regularize_velocity(v, ref, gamma=0.1)
    assert torch.allclose(out[0, :, 0, 0, 0], torch.tensor([3.0, 0.4]), atol=1e-6)
    assert torch.allclose(out[0, :, 0, 0, 1], torch.tensor([0.2, 2.0]), atol=1e-6)


def test_velocity_regularization_limits():
    v, ref = torch.randn(1, 4, 2, 3, 3), torch.randn(1, 4, 2, 3, 3)
    assert torch.allclose(guidance.regularize_velocity(v, ref, 1.0), v, atol=1e-5)
    parallel = guidance.regularize_velocity(v, ref, 0.0)
    # With gamma 0 only the component along the reference is left: zero cross product per position.
    cosine = torch.nn.functional.cosine_similarity(parallel, ref, dim=1).abs()
    assert torch.allclose(cosine, torch.ones_like(cosine), atol=1e-4)
    # A zero reference (no progress yet) keeps only the gamma share and never divides by zero.
    out = guidance.regularize_velocity(v, torch.zeros_like(v), 0.1)
    assert torch.allclose(out, 0.1 * v)


def test_frame_differences_stack_consecutive_then_all_ordered_pairs():
    # One channel, three frames of one pixel: values 1, 4, 9.
    x = torch.tensor([1.0, 4.0, 9.0]).view(1, 1, 3, 1, 1)
    d = guidance.frame_differences(x).flatten().tolist()
    consecutive = [3.0, 5.0]
    pairs = [
        3.0,
        8.0,  # frame 0 against 1, 2
        3.0,
        5.0,  # frame 1 against 0, 2
        8.0,
        5.0,
    ]  # frame 2 against 0, 1
    assert d == consecutive + pairs


def test_frame_differences_shape():
    x = torch.randn(2, 16, 13, 4, 5)
    assert guidance.frame_differences(x).shape == (2, 16, 12 + 13 * 12, 4, 5)


def test_alignment_losses_by_hand():
    src = torch.tensor([0.0, 2.0]).view(1, 1, 2, 1, 1)
    tgt = torch.tensor([1.0, 1.0]).view(1, 1, 2, 1, 1)
    assert guidance.latent_alignment_loss(src, tgt).item() == pytest.approx(1.0)
    # D(src) = [2 | 2, 2], D(tgt) = [0 | 0, 0]: mean of 4s.
    assert guidance.difference_alignment_loss(src, tgt).item() == pytest.approx(4.0)
    assert guidance.motion_loss(src, tgt, 20.0, 5.0).item() == pytest.approx(20.0 + 20.0)
    assert guidance.motion_loss(src, tgt, 20.0, 0.0).item() == pytest.approx(20.0)


def test_difference_alignment_of_a_single_frame_is_zero_and_differentiable():
    tgt = torch.randn(1, 2, 1, 2, 2, requires_grad=True)
    loss = guidance.difference_alignment_loss(torch.randn(1, 2, 1, 2, 2), tgt)
    loss.backward()
    assert loss.item() == 0.0 and torch.count_nonzero(tgt.grad) == 0


def test_difference_alignment_ignores_a_constant_offset():
    src = torch.randn(1, 3, 4, 2, 2)
    assert guidance.difference_alignment_loss(src, src + 3.0).item() == pytest.approx(0.0, abs=1e-10)
    assert guidance.latent_alignment_loss(src, src + 3.0).item() == pytest.approx(9.0)
