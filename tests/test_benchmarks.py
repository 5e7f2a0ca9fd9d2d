"""The scripts in benchmarks/: each one's smallest run, in its own process, ends with a JSON report
that has its usual fields and a complete machine record (benchmarks/report.py); and the shared
module's parser and report writing."""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import dies_with_pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
TIMEOUT_S = 180  # a run takes 2-25 s on a busy 2-core CPU (bench_ray the longest: Ray starts)
# each script's smallest run, and the fields its report must have beside "machine"
RUNS = {
    # no smaller model than the shipped ones: neither the network rows nor the clip, only the report
    "bench_backends": (["--scales", "2", "--frames", "0", "--skip", "model", "cost"],
                       {"benchmark", "settings", "rows"}),
    "bench_ray": (["--tiny", "--clips", "1", "--clip-frames", "4", "--chunk", "2", "--size", "32x24",
                   "--chunk-frames", "2", "--chunk-mib", "0.1"],
                  {"model", "threads", "ray_start_s", "clips", "wall_s", "overhead_per_chunk_s",
                   "overhead_share"}),
    "bench_source_hash": (["--mib", "4", "--repeats", "1"], {"mib", "read_seconds", "identity_seconds"}),
    "bench_train": (["--steps", "1", "--batch-size", "2", "--patch", "16", "--workers", "0", "--scales", "2",
                     "--degrade", "clean"], {"threads", "results"}),
    "bench_upscale": (["--size", "32", "--repeats", "1", "--images", "1", "--scales", "2", "--cpu-only"],
                      {"benchmark", "settings", "rows"}),
    "bench_video": (["--tiny", "--frames", "2", "--scales", "2", "--devices", "cpu", "--reuse-frames", "2"],
                    {"model", "frames", "throughput", "held_frame_reuse"}),
}
SLOW = pytest.mark.slow  # over about 5 s


@pytest.fixture(scope="module")
def report():
    """benchmarks/report.py, imported as the scripts import it (their folder on sys.path)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(BENCHMARKS))
        yield importlib.import_module("report")


@pytest.mark.parametrize("name", [
    "bench_backends",
    pytest.param("bench_ray", marks=[SLOW, pytest.mark.ray]),
    "bench_source_hash",
    pytest.param("bench_train", marks=SLOW),
    "bench_upscale",
    pytest.param("bench_video", marks=SLOW),
])
def test_smallest_run_writes_its_report(name: str, report, tmp_path: Path) -> None:
    args, fields = RUNS[name]
    env = dict(os.environ)
    if name == "bench_ray":
        if importlib.util.find_spec("ray") is None:
            pytest.skip("needs Ray: pip install 'animesr[ray]'")
        env.pop("RAY_ADDRESS", None)  # the script starts a local instance of its own
    out = tmp_path / "results" / f"{name}.json"
    command = [sys.executable, str(BENCHMARKS / f"{name}.py"), *args, "--json", str(out)]
    done = subprocess.run(dies_with_pytest(command), cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"wrote {out}" in done.stdout
    written = json.loads(out.read_text())
    assert fields <= written.keys()
    assert_complete(written["machine"], report.machine())
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temporary file left beside it


def assert_complete(record: dict, here: dict) -> None:
    assert here.keys() <= record.keys()
    for key in ("python", "torch", "platform", "cpu", "cpu_count", "cuda"):  # the same in this process
        assert record[key] == here[key], key
    assert isinstance(record["torch_threads"], int) and record["torch_threads"] >= 1
    assert record["load_average_1min"] is None or record["load_average_1min"] >= 0


def test_scripts_import_the_shared_module(report) -> None:
    """Imported (not run), every script finds report.py beside it and keeps no copy of its own."""
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(BENCHMARKS))
        for name in RUNS:
            script = importlib.import_module(name)
            assert script.machine is report.machine and script.write_report is report.write_report, name
            assert script.parser is report.parser, name


def test_machine_record(report) -> None:
    record = report.machine()
    assert list(record) == ["python", "torch", "platform", "cpu", "cpu_count", "torch_threads",
                            "load_average_1min", "cuda"]
    json.dumps(record)
    if Path("/proc/cpuinfo").is_file() and "model name" in Path("/proc/cpuinfo").read_text():
        assert record["cpu"]


def test_parser_defaults_to_the_results_folder(report) -> None:
    options = report.parser(__doc__, "bench_x")
    assert options.description == __doc__
    assert options.parse_args([]).json == BENCHMARKS / "results" / "bench_x.json"
    assert options.parse_args(["--json", "a/b.json"]).json == Path("a/b.json")


def test_write_report_replaces_the_file_whole(report, tmp_path: Path) -> None:
    path = tmp_path / "new" / "folder" / "r.json"
    report.write_report(path, {"a": [1, 2]})
    assert json.loads(path.read_text()) == {"a": [1, 2]} and path.read_text().endswith("}\n")
    report.write_report(path, {"b": 3})
    assert json.loads(path.read_text()) == {"b": 3}
    with pytest.raises(TypeError):  # not JSON: the old report stays
        report.write_report(path, {"c": object()})
    assert json.loads(path.read_text()) == {"b": 3}


def test_write_report_that_fails_leaves_the_old_one(report, tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "r.json"
    report.write_report(path, {"b": 3})

    def full_disk(*args) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(OSError):
        report.write_report(path, {"c": 4})
    assert json.loads(path.read_text()) == {"b": 3}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]
