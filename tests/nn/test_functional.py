"""The shared style-transfer math: each function's exact formula, which the exported graphs, the trained
models and the metrics depend on bit for bit."""

from __future__ import annotations

import pytest
import torch

from stylepipe.nn.functional import (
    EPS,
    adain,
    adain_blend,
    blend,
    coral,
    gram,
    mean_std,
    mean_std_of_sums,
    normalise,
)


@pytest.fixture
def feat() -> torch.Tensor:
    """Random features at a Caffe-like scale with one constant channel (variance exactly 0)."""
    x = torch.randn(2, 8, 5, 7, generator=torch.Generator().manual_seed(3)) * 30.0
    x[:, 0] = 4.0
    return x


def _biased_var(x: torch.Tensor) -> torch.Tensor:
    return (x - x.mean(dim=(2, 3), keepdim=True)).pow(2).mean(dim=(2, 3), keepdim=True)


def test_export_form_puts_eps_outside_the_sqrt(feat: torch.Tensor) -> None:
    mean, std = mean_std(feat)
    assert torch.equal(mean, feat.mean(dim=(2, 3), keepdim=True))
    assert torch.equal(std, _biased_var(feat).sqrt() + EPS)
    assert float(std[0, 0]) == pytest.approx(EPS)  # a constant channel: std is eps itself


def test_loss_form_puts_eps_inside_the_sqrt_and_keeps_gradients_finite(feat: torch.Tensor) -> None:
    x = feat.clone().requires_grad_()
    _, std = mean_std(x, eps_in_sqrt=True)
    assert torch.equal(std.detach(), (_biased_var(feat) + EPS).sqrt())
    std.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_scaled_variance_matches_the_unscaled_one(feat: torch.Tensor) -> None:
    _, plain = mean_std(feat)
    _, scaled = mean_std(feat, scale=16.0)
    torch.testing.assert_close(scaled, plain, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="export form"):
        mean_std(feat, scale=16.0, eps_in_sqrt=True)


def test_sums_give_the_statistics_of_the_whole(feat: torch.Tensor) -> None:
    """Moments accumulated in pieces (float64) equal mean_std of the whole map; an empty region is finite."""
    x = feat[:1].double()
    total, total_sq = x.sum(dim=(2, 3)), (x * x).sum(dim=(2, 3))
    count = torch.tensor([[float(x.shape[2] * x.shape[3])]], dtype=torch.float64)
    mean, std = mean_std_of_sums(total, total_sq, count)
    ref_mean, ref_std = mean_std(x)
    torch.testing.assert_close(mean, ref_mean.reshape(1, -1))
    torch.testing.assert_close(std, ref_std.reshape(1, -1), rtol=1e-9, atol=1e-7)
    empty_mean, empty_std = mean_std_of_sums(torch.zeros(1, 3), torch.zeros(1, 3), torch.zeros(1, 1))
    assert torch.equal(empty_mean, torch.zeros(1, 3)) and torch.equal(empty_std, torch.full((1, 3), EPS))


def test_adain_gives_the_style_statistics(feat: torch.Tensor) -> None:
    s_mean, s_std = torch.randn(2, 8, 1, 1), torch.rand(2, 8, 1, 1) + 0.5
    out = adain(feat, s_mean, s_std)
    c_mean, c_std = mean_std(feat)
    assert torch.equal(out, (feat - c_mean) / c_std * s_std + s_mean)
    o_mean, o_std = mean_std(out[:, 1:], eps=0.0)
    torch.testing.assert_close(o_mean, s_mean[:, 1:], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(o_std, s_std[:, 1:], atol=1e-3, rtol=1e-3)
    scaled = normalise(feat, *mean_std(feat, scale=4.0)) * s_std + s_mean
    assert torch.equal(adain(feat, s_mean, s_std, scale=4.0), scaled)


def test_blend_is_the_target_at_alpha_one_and_the_content_at_zero(feat: torch.Tensor) -> None:
    target = torch.randn_like(feat)
    assert blend(target, feat, 1.0) is target
    assert torch.equal(blend(target, feat, 0.0), feat)
    assert torch.equal(blend(target, feat, 0.25), 0.25 * target + 0.75 * feat)
    assert blend(target, torch.full_like(feat, float("nan")), 1.0) is target  # no NaN leaks in at alpha 1
    s_mean, s_std = torch.zeros(2, 8, 1, 1), torch.ones(2, 8, 1, 1)
    assert torch.equal(adain_blend(feat, s_mean, s_std, 0.4), blend(adain(feat, s_mean, s_std), feat, 0.4))


def test_gram_is_normalised_by_the_feature_size() -> None:
    f = torch.randn(2, 4, 3, 5, generator=torch.Generator().manual_seed(1))
    flat = f.reshape(2, 4, 15)
    assert torch.equal(gram(f), flat @ flat.transpose(1, 2) / (4 * 3 * 5))
    assert gram(f).shape == (2, 4, 4)


def test_coral_gives_the_target_colour_statistics() -> None:
    gen = torch.Generator().manual_seed(2)
    source = torch.rand(3, 20, 24, generator=gen)
    target = torch.rand(3, 20, 24, generator=gen) * torch.tensor([0.5, 1.0, 0.2])[:, None, None]
    moved = coral(source, target)
    assert moved.dtype == source.dtype and moved.shape == source.shape
    flat_m, flat_t = moved.reshape(3, -1).double(), target.reshape(3, -1).double()
    torch.testing.assert_close(flat_m.mean(1), flat_t.mean(1), atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.cov(flat_m), torch.cov(flat_t), atol=2e-3, rtol=5e-2)
