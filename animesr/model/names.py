"""The one mapping from the A2N authors' checkpoint names to ours."""

from __future__ import annotations

import re

import torch

_AUTHORS_MARKER = "AAB_trunk.0.ADM.0.weight"

_BLOCK_PARTS = {
    "conv_first": "reduce_in",
    "ADM.0": "adm.0",
    "ADM.2": "adm.2",
    "conv_last": "project_out",
}

_TOP_LEVEL = {
    "conv_first": "head",
    "trunk_conv": "trunk_out",
    "upconv1": "upsample.0.conv",
    "att1.conv": "upsample.0.attention.conv",
    "HRconv1": "upsample.0.refine",
    "upconv2": "upsample.1.conv",
    "att2.conv": "upsample.1.attention.conv",
    "HRconv2": "upsample.1.refine",
    "conv_last": "tail",
}

_BLOCK_KEY = re.compile(r"^AAB_trunk\.(\d+)\.(.+)\.(weight|bias)$")
_TOP_KEY = re.compile(r"^(.+)\.(weight|bias)$")


def is_authors_state_dict(state: dict[str, torch.Tensor]) -> bool:
    return _AUTHORS_MARKER in state


def authors_scale_is_four(state: dict[str, torch.Tensor]) -> bool:
    """The authors' x2 and x3 files have identical keys; only x4 has a second upsampling step."""
    return "upconv2.weight" in state


def _rename(key: str) -> str:
    block = _BLOCK_KEY.match(key)
    if block:
        index, part, kind = block.groups()
        return f"blocks.{index}.{_BLOCK_PARTS.get(part, part)}.{kind}"
    top = _TOP_KEY.match(key)
    if top and top.group(1) in _TOP_LEVEL:
        return f"{_TOP_LEVEL[top.group(1)]}.{top.group(2)}"
    raise KeyError(key)


def from_authors_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename `AAB_trunk.3.attention.k1.weight` → `blocks.3.attention.k1.weight` and so on.

    Raises KeyError naming the first key that is not part of the authors' A2N.
    """
    return {_rename(key): value for key, value in state.items()}
