"""The resumable training state in RUN_DIR/state.pt: tensors and plain values only.

The file is a torch pickle, loaded with `weights_only=True`: tensors, numbers, strings, lists,
tuples and dicts, nothing that names code. A state file carrying anything else (a planted
`os.system` call) is refused, never run. States written before this rule hold the NumPy random
state as an array; the three NumPy names needed to rebuild such an array are allowed too, so
those files still resume.
"""

from __future__ import annotations

import io
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from animesr.errors import TrainingError

STATE_NAME = "state.pt"


def _numpy_array_globals() -> list:
    """What an ndarray pickle names (NumPy 2 and NumPy 1 spellings); rebuilding an array runs no
    code of the file's choosing."""
    reconstruct = _multiarray()._reconstruct
    return [np.ndarray, np.dtype, type(np.dtype(np.uint32)),
            (reconstruct, "numpy._core.multiarray._reconstruct"),
            (reconstruct, "numpy.core.multiarray._reconstruct")]


def _multiarray():
    try:
        from numpy._core import multiarray
    except ImportError:  # NumPy 1
        from numpy.core import multiarray
    return multiarray


def write_state(path: Path, state: dict[str, Any]) -> None:
    """Write the state to `path` (the caller makes it atomic with the checkpoint it belongs to).
    Serialised in memory first: torch.save's own writer reports a full disk as a RuntimeError
    ("unexpected pos"), a plain file write as the OSError it is."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    path.write_bytes(buffer.getbuffer())


def load_state(run_dir: Path) -> dict[str, Any]:
    path = run_dir / STATE_NAME
    if not path.exists():
        raise TrainingError(f"{run_dir} has no training state to resume ({STATE_NAME} missing)")
    if not path.is_file():
        raise TrainingError(f"{path} is not a file: {run_dir} has no training state to resume")
    try:
        with torch.serialization.safe_globals(_numpy_array_globals()):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "Weights only load failed" in str(error):
            raise TrainingError(f"{path} holds more than training state (code or foreign objects); "
                                "refused without running it") from None
        raise TrainingError(f"{path} is damaged and cannot be resumed ({_first_line(error)})") from None
    except Exception as error:  # a damaged file raises many types
        raise TrainingError(f"{path} is damaged and cannot be resumed ({_first_line(error)})") from None
    if not isinstance(state, dict) or not {"model", "optimizer", "step", "config", "random"} <= state.keys():
        raise TrainingError(f"{path} is not an animesr training state")
    return state


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def random_states() -> dict[str, Any]:
    kind, keys, position, has_gauss, cached = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached),
        "torch": torch.get_rng_state(),
    }


def restore_random_states(states: dict[str, Any]) -> None:
    random.setstate(states["python"])
    kind, keys, position, has_gauss, cached = states["numpy"]
    keys = keys.numpy() if isinstance(keys, torch.Tensor) else np.asarray(keys)
    np.random.set_state((kind, keys.astype(np.uint32), position, has_gauss, cached))
    torch.set_rng_state(states["torch"])
