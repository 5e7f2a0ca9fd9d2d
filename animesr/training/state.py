"""The resumable training state in RUN_DIR/state.pt, written atomically."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from animesr.atomic import replaced_on_success
from animesr.errors import TrainingError

STATE_NAME = "state.pt"


def save_state(run_dir: Path, state: dict[str, Any]) -> None:
    with replaced_on_success(run_dir / STATE_NAME) as temporary:
        torch.save(state, temporary)


def load_state(run_dir: Path) -> dict[str, Any]:
    path = run_dir / STATE_NAME
    if not path.is_file():
        raise TrainingError(f"{run_dir} has no training state to resume ({STATE_NAME} missing)")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # a damaged pickle raises many types
        raise TrainingError(f"{path} is damaged and cannot be resumed ({error})") from None


def random_states() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def restore_random_states(states: dict[str, Any]) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
