"""The network: published parameter counts, shapes, and the authors' checkpoint names."""

from __future__ import annotations

import pytest
import torch

from animesr.model import A2N, A2NConfig, from_authors_state_dict, is_authors_state_dict
from animesr.model.names import authors_scale_is_four
from conftest import tiny_model


@pytest.mark.parametrize(("scale", "expected"), [(2, 1_036_443), (3, 1_036_443), (4, 1_047_459)])
def test_parameter_counts_match_the_paper(scale: int, expected: int) -> None:
    model = A2N(A2NConfig(scale=scale))
    assert sum(p.numel() for p in model.parameters()) == expected


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize(("height", "width"), [(16, 16), (13, 21), (1, 7)])
def test_output_shape(scale: int, height: int, width: int) -> None:
    model = tiny_model(scale)
    with torch.no_grad():
        out = model(torch.rand(2, 3, height, width))
    assert out.shape == (2, 3, height * scale, width * scale)
    assert out.dtype == torch.float32


def test_full_size_forward_shape() -> None:
    model = A2N(A2NConfig(scale=4)).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 9, 11)).shape == (1, 3, 36, 44)


def test_unsupported_scale_is_rejected() -> None:
    with pytest.raises(ValueError, match="scales"):
        A2NConfig(scale=8)


def test_block_split_equals_forward() -> None:
    # reduce / branch_weights / mix (used by exact tiling) compose to the block's forward
    model = tiny_model(2)
    block = model.blocks[0]
    x = torch.randn(2, 8, 10, 12)
    with torch.no_grad():
        y = block.reduce(x)
        split = block.mix(x, y, block.branch_weights(y.mean(dim=(2, 3))))
        torch.testing.assert_close(split, block(x))


@pytest.mark.parametrize("name", ["aan_x2.pt", "aan_x3.pt"])
def test_authors_names_load_all_172_keys_strictly(official_dir, name: str) -> None:
    state = torch.load(official_dir / name, map_location="cpu", weights_only=True)
    assert len(state) == 172
    assert is_authors_state_dict(state)
    assert not authors_scale_is_four(state)
    renamed = from_authors_state_dict(state)
    assert len(renamed) == 172
    model = A2N(A2NConfig(scale=2 if "x2" in name else 3))
    result = model.load_state_dict(renamed, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    # every tensor landed unchanged
    ours = model.state_dict()
    for key, value in renamed.items():
        assert torch.equal(ours[key], value.float()), key


def test_authors_x4_names_map_both_upsampling_steps() -> None:
    # The authors' x4 layout (no file in the fixtures): build it from ours by the inverse names.
    model = A2N(A2NConfig(scale=4))
    ours = model.state_dict()
    inverse = {
        "head": "conv_first", "trunk_out": "trunk_conv", "tail": "conv_last",
        "upsample.0.conv": "upconv1", "upsample.0.attention.conv": "att1.conv", "upsample.0.refine": "HRconv1",
        "upsample.1.conv": "upconv2", "upsample.1.attention.conv": "att2.conv", "upsample.1.refine": "HRconv2",
    }
    parts = {"reduce_in": "conv_first", "adm.0": "ADM.0", "adm.2": "ADM.2", "project_out": "conv_last"}
    authors = {}
    for key, value in ours.items():
        stem, kind = key.rsplit(".", 1)
        if stem.startswith("blocks."):
            _, index, part = stem.split(".", 2)
            authors[f"AAB_trunk.{index}.{parts.get(part, part)}.{kind}"] = value
        else:
            authors[f"{inverse[stem]}.{kind}"] = value
    assert authors_scale_is_four(authors)
    assert from_authors_state_dict(authors).keys() == ours.keys()


def test_unknown_authors_key_is_named() -> None:
    with pytest.raises(KeyError, match="mystery"):
        from_authors_state_dict({"AAB_trunk.0.ADM.0.weight": torch.zeros(1), "mystery.weight": torch.zeros(1)})
