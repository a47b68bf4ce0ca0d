"""The Gram style loss behaves as a style measure: it sees which features occur together, not where."""

from __future__ import annotations

import torch

from stylepipe.nn.losses import gram, gram_loss, gram_target_loss


def test_gram_of_a_hand_worked_feature_map() -> None:
    # two channels over two pixels: [1, 2] and [3, 0]; C*H*W = 4
    feat = torch.tensor([[[[1.0, 2.0]], [[3.0, 0.0]]]])
    assert torch.equal(gram(feat), torch.tensor([[[5 / 4, 3 / 4], [3 / 4, 9 / 4]]]))


def test_gram_ignores_where_features_are_and_how_large_the_image_is() -> None:
    g = torch.Generator().manual_seed(0)
    feat = torch.rand(1, 6, 4, 5, generator=g)
    shuffled = feat.flatten(2)[:, :, torch.randperm(20, generator=g)].reshape(1, 6, 4, 5)
    torch.testing.assert_close(gram(shuffled), gram(feat))
    torch.testing.assert_close(gram(feat.repeat(1, 1, 3, 2)), gram(feat))


def test_gram_loss_is_zero_for_the_same_texture_anywhere_and_positive_for_another() -> None:
    g = torch.Generator().manual_seed(1)
    style = {"a": torch.rand(1, 4, 6, 6, generator=g), "b": torch.rand(1, 8, 3, 3, generator=g)}
    moved = {k: torch.roll(v, shifts=(2, 1), dims=(2, 3)) for k, v in style.items()}
    other = {k: torch.rand(v.shape, generator=g) ** 3 for k, v in style.items()}
    assert gram_loss(moved, style, ["a", "b"]) < 1e-12
    assert gram_loss(other, style, ["a", "b"]) > 1e-3


def test_one_style_gram_serves_a_whole_batch_and_layers_are_weighted() -> None:
    g = torch.Generator().manual_seed(2)
    out = {"a": torch.rand(3, 4, 5, 5, generator=g), "b": torch.rand(3, 8, 4, 4, generator=g)}
    style = {"a": torch.rand(1, 4, 7, 7, generator=g), "b": torch.rand(1, 8, 3, 3, generator=g)}
    targets = {k: gram(v) for k, v in style.items()}
    batch_style = {k: v.expand(3, -1, -1, -1) for k, v in style.items()}
    torch.testing.assert_close(gram_target_loss(out, targets, ["a", "b"]), gram_loss(out, batch_style, ["a", "b"]))
    only_a, only_b = gram_loss(out, batch_style, ["a"]), gram_loss(out, batch_style, ["b"])
    torch.testing.assert_close(gram_target_loss(out, targets, ["a", "b"], [2.0, 0.5]), 2 * only_a + 0.5 * only_b)
