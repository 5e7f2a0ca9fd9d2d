"""The one callback protocol of the jobs: images, video, training and preview.

A job takes a frozen dataclass of plain callables built on `JobCallbacks`: `note` (something the
user may like to know), `warn` (something that may be wrong with the result) and the job's own
progress events, each named `on_<event>`. Every callable is optional and does nothing when left
out. The core never prints: the CLI, or any other caller, decides how to show them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

Message = Callable[[str], None]


def ignore(*_: object) -> None:
    return None


@dataclass(frozen=True)
class JobCallbacks:
    note: Message = ignore
    warn: Message = ignore
