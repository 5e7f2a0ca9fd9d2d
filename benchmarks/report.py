"""What every benchmark script shares: its command line (with --json), a record of the machine it
ran on, and writing its JSON report.

The scripts run as `python benchmarks/bench_x.py`, so Python puts this folder on sys.path and they
import this module as `from report import ...`; whatever imports a script (a test) puts this folder
on sys.path first.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
# the project's shared data (real anime pictures and clips): ../shared, or $ANIMESR_SHARED
SHARED = Path(os.environ.get("ANIMESR_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))


def parser(doc: str, name: str) -> argparse.ArgumentParser:
    """A parser described by the script's docstring, with --json defaulting to results/{name}.json."""
    options = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    options.add_argument("--json", type=Path, default=RESULTS / f"{name}.json",
                         help="where to write the JSON report (default %(default)s)")
    return options


def machine() -> dict:
    """Python, torch, the platform, the CPU (model name where /proc/cpuinfo has one, None otherwise),
    its logical CPUs, torch's threads, the 1-minute load average and the CUDA device (or None)."""
    import torch

    return {
        "python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform(),
        "cpu": _cpu_model(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def write_report(path: Path, report: dict) -> None:
    """Write `report` as indented JSON, whole or not at all (animesr's own atomic write)."""
    from animesr.atomic import replaced_on_success

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=2) + "\n"  # before the temporary exists: a bad report leaves nothing
    with replaced_on_success(path) as temporary:
        temporary.write_text(text, encoding="utf-8")


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip() or None
    except OSError:
        pass
    return None
