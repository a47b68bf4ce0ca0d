"""StyleBank: the one reader and writer of style-statistics files (stylize, serving, export, the demo)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from stylepipe.core.errors import InputError
from stylepipe.nn.statistics import StatsOrigin, StyleBank, StyleBankError


@pytest.fixture
def bank() -> StyleBank:
    g = torch.Generator().manual_seed(0)
    return StyleBank(["ink", "oil", "wash"], torch.randn(3, 8, 1, 1, generator=g),
                     torch.rand(3, 8, 1, 1, generator=g) + 0.1, "vgg16_hed", "relu3_1")


def test_a_saved_bank_loads_back_unchanged(tmp_path: Path, bank: StyleBank) -> None:
    loaded = StyleBank.load(bank.save(tmp_path / "bank.pt"))
    assert (loaded.names, loaded.encoder, loaded.layer) == (bank.names, bank.encoder, bank.layer)
    assert torch.equal(loaded.mean, bank.mean) and torch.equal(loaded.std, bank.std)


def test_a_train_adain_bank_without_format_or_origin_keys_loads(tmp_path: Path, bank: StyleBank) -> None:
    """The layout train_adain writes (no "format"), and banks older than the encoder/layer keys."""
    torch.save({"names": bank.names, "mean": bank.mean, "std": bank.std, "encoder": "vgg16_hed",
                "layer": "relu3_1"}, tmp_path / "trained.pt")
    torch.save({"names": bank.names, "mean": bank.mean, "std": bank.std}, tmp_path / "old.pt")
    trained = StyleBank.load_trained(tmp_path / "trained.pt", StatsOrigin(8, "vgg16_hed", "relu3_1"))
    assert trained.origin == StatsOrigin(8, "vgg16_hed", "relu3_1")
    old = StyleBank.load_trained(tmp_path / "old.pt", StatsOrigin(8, "vgg16_hed", "relu3_1"))
    assert old.origin == StatsOrigin(8) and torch.equal(old.mean, bank.mean)


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        ({"names": ["a"], "mean": torch.zeros(1, 8, 1, 1)},
         "expected a style statistics file with keys names, mean, std"),
        ({"names": "a", "mean": torch.zeros(1, 8, 1, 1), "std": torch.ones(1, 8, 1, 1)}, "names must be a list"),
        ({"names": ["a", "b"], "mean": torch.zeros(1, 8, 1, 1), "std": torch.ones(1, 8, 1, 1)},
         r"mean must be \[S, C, 1, 1\] for S=2 names, got \[1, 8, 1, 1\]"),
        ({"names": ["a"], "mean": torch.zeros(1, 8, 1, 1), "std": torch.ones(1, 4, 1, 1)},
         r"mean \[1, 8, 1, 1\] and std \[1, 4, 1, 1\] differ in shape"),
        ({"names": ["a"], "mean": torch.zeros(1, 8, 1, 1), "std": torch.zeros(1, 8, 1, 1)}, "std must be positive"),
        ({"names": ["a"], "mean": torch.zeros(1, 8, 1, 1), "std": torch.ones(1, 8, 1, 1),
          "palette": torch.zeros(1, 4, 8)}, r"palette must be \[S, 3, Q\] for S=1 names and Q >= 2 quantiles"),
        ({"names": ["a"], "mean": torch.zeros(1, 8, 1, 1), "std": torch.ones(1, 8, 1, 1),
          "palette": torch.linspace(1, 0, 8).repeat(1, 3, 1)}, "palette must hold finite quantiles, non-decreasing"),
    ],
    ids=["no-std", "names-string", "count", "shapes", "zero-std", "palette-shape", "palette-order"],
)
def test_a_malformed_file_is_refused_naming_it(tmp_path: Path, blob: dict, message: str) -> None:
    torch.save(blob, tmp_path / "bad.pt")
    with pytest.raises(StyleBankError, match=r"bad\.pt: " + message):
        StyleBank.load(tmp_path / "bad.pt")


def test_missing_and_unreadable_files_are_one_error_type(tmp_path: Path) -> None:
    with pytest.raises(StyleBankError, match=r"none\.pt: style statistics file not found \(run `dvc repro"):
        StyleBank.load_trained(tmp_path / "none.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(StyleBankError, match=r"junk\.pt: not a readable style statistics file"):
        StyleBank.load(tmp_path / "junk.pt")
    assert issubclass(StyleBankError, InputError)  # the CLI prints it as one line, serving as HTTP 400


def test_a_bank_of_another_layer_is_refused_naming_both_sides(bank: StyleBank) -> None:
    with pytest.raises(StyleBankError, match=r"b\.pt: style statistics of encoder 'vgg16_hed' at relu3_1, 8 channels, "
                                             r"but the model takes encoder 'vgg16_hed' at relu4_1, 8 channels: redo"):
        bank.check_fits(StatsOrigin(8, "vgg16_hed", "relu4_1"), "b.pt", "redo")
    bank.check_fits(StatsOrigin(8), "b.pt")  # an origin that records only its channels


def test_select_and_at_pick_styles_by_name_and_index(bank: StyleBank) -> None:
    picked = bank.select(["wash", "ink"], "b.pt")
    assert picked.names == ["wash", "ink"] and torch.equal(picked.mean, bank.mean[[2, 0]])
    assert (picked.encoder, picked.layer) == (bank.encoder, bank.layer)
    assert torch.equal(bank.at(1, "b.pt").std, bank.std[1:2])
    with pytest.raises(StyleBankError, match=r"b\.pt: no style named \['gouache'\]; the file has \['ink', 'oil', "
                                             r"'wash'\]"):
        bank.select(["gouache"], "b.pt")
    with pytest.raises(StyleBankError, match=r"b\.pt: no style at index 3; the file holds 3 styles"):
        bank.at(3, "b.pt")


def test_mixed_is_the_weighted_mean_of_the_statistics(bank: StyleBank) -> None:
    mean, std = bank.mixed(torch.tensor([0.5, 0.0, 0.5]))
    assert mean.shape == std.shape == (1, 8, 1, 1)
    torch.testing.assert_close(mean, (bank.mean[:1] + bank.mean[2:]) / 2)
    torch.testing.assert_close(std, (bank.std[:1] + bank.std[2:]) / 2)


def test_palettes_are_saved_selected_and_mixed(tmp_path: Path, bank: StyleBank) -> None:
    bank.palette = torch.linspace(0, 1, 16).repeat(3, 3, 1) * torch.tensor([0.2, 0.6, 1.0])[:, None, None]
    loaded = StyleBank.load(bank.save(tmp_path / "bank.pt"))
    assert torch.equal(loaded.palette, bank.palette)
    assert torch.equal(loaded.select(["wash", "ink"], "f").palette, bank.palette[[2, 0]])
    mixed = loaded.mixed_palette(torch.tensor([0.5, 0.0, 0.5]))
    assert torch.allclose(mixed, 0.6 * bank.palette[:1] / 0.2)


def test_a_bank_without_palettes_says_how_to_get_them(bank: StyleBank) -> None:
    with pytest.raises(StyleBankError, match=r"hold no palette.*--save-style-stats.*--palette none"):
        bank.mixed_palette(torch.tensor([1.0, 0.0, 0.0]))
