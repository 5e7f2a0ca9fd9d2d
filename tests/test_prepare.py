"""animesr prepare: HR sub-images + bicubic LR pairs in one deterministic HDF5 file."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from animesr.cli import _register, app
from animesr.config import PrepareSettings
from animesr.data.prepare import check_dataset, content_id, prepare_dataset, window_starts
from animesr.errors import DatasetError, InputError, OutputError
from animesr.imaging import downscale, write_image
from conftest import dies_with_pytest, handled, smooth_image

_register()


@pytest.fixture
def pictures(tmp_path: Path) -> Path:
    folder = tmp_path / "pics"
    (folder / "sub").mkdir(parents=True)
    write_image(folder / "a.png", smooth_image(100, 130, seed=1))
    write_image(folder / "sub" / "b.png", smooth_image(96, 96, channels=4, seed=2))
    write_image(folder / "small.png", smooth_image(30, 200, seed=3))
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return folder


def settings(src: Path, out: Path, **changes) -> PrepareSettings:
    base = dict(sources=(src,), output=out, crop=48, stride=20, scales=(2, 4))
    return PrepareSettings(**{**base, **changes})


def test_window_starts_cover_the_border() -> None:
    assert window_starts(100, 48, 20) == [0, 20, 40, 52]
    assert window_starts(88, 48, 20) == [0, 20, 40]
    assert window_starts(47, 48, 20) == []


def test_dataset_layout_pairs_and_provenance(pictures: Path, tmp_path: Path) -> None:
    out = tmp_path / "d.h5"
    report = prepare_dataset(settings(pictures, out))
    # a.png: rows [0,20,40,52] × cols [0,20,40,60,80,82]; b.png: [0,20,40,48]²
    assert report.samples == 4 * 6 + 4 * 4
    assert report.images_used == 2
    assert sorted(Path(name).name for name, _ in report.skipped) == ["broken.png", "small.png"]
    with h5py.File(out) as h5:
        assert h5["hr"].shape == (40, 48, 48, 3)
        assert h5["lr_x2"].shape == (40, 24, 24, 3) and h5["lr_x4"].shape == (40, 12, 12, 3)
        assert h5["hr"].chunks == (1, 48, 48, 3) and h5["hr"].compression == "gzip"
        for i in (0, 17, 39):
            hr = h5["hr"][i]
            assert np.array_equal(h5["lr_x2"][i], downscale(hr, 2))
            assert np.array_equal(h5["lr_x4"][i], downscale(hr, 4))
        a = smooth_image(100, 130, seed=1)
        y, x = h5["position"][5]
        assert h5["source"][5] == 0 and np.array_equal(h5["hr"][5], a[y: y + 48, x: x + 48])
        attrs = dict(h5.attrs)
    assert attrs["format"] == "animesr-sr-pairs" and attrs["format_version"] == 1
    assert (attrs["crop"], attrs["stride"], list(attrs["scales"])) == (48, 20, [2, 4])
    sources = json.loads(attrs["sources"])
    assert [s["name"] for s in sources] == ["a.png", "b.png"]
    assert all(len(s["sha256"]) == 64 for s in sources)


def test_same_inputs_give_identical_datasets(pictures: Path, tmp_path: Path) -> None:
    first, second = tmp_path / "1.h5", tmp_path / "2.h5"
    prepare_dataset(settings(pictures, first))
    prepare_dataset(settings(pictures, second))
    with h5py.File(first) as a, h5py.File(second) as b:
        for name in a:
            assert np.array_equal(a[name][()], b[name][()]), name
        assert {k: v for k, v in a.attrs.items() if k != "created"}.keys() == b.attrs.keys() - {"created"}
        assert a.attrs["sources"] == b.attrs["sources"]


def test_refuses_to_overwrite_and_leaves_no_temporary(pictures: Path, tmp_path: Path) -> None:
    out = tmp_path / "d.h5"
    out.write_bytes(b"keep me")
    with pytest.raises(OutputError, match="--overwrite"):
        prepare_dataset(settings(pictures, out))
    assert out.read_bytes() == b"keep me"
    prepare_dataset(settings(pictures, out, overwrite=True))
    assert check_dataset(out, 4)["samples"] == 40
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_never_writes_over_an_input_picture_or_into_a_folder(pictures: Path, tmp_path: Path) -> None:
    """`-o INPUT --overwrite` turned an input picture into the HDF5 file; `-o FOLDER --overwrite`
    failed only after all the work."""
    picture = next(pictures.glob("*.png"))
    before = picture.read_bytes()
    for target, words in [(picture, "is a picture"), (tmp_path, "it is a folder")]:
        with pytest.raises(OutputError, match=words):
            prepare_dataset(settings(pictures, target, overwrite=True))
    assert picture.read_bytes() == before


def test_no_usable_image_is_an_error(pictures: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no usable image"):
        prepare_dataset(settings(pictures / "small.png", tmp_path / "d.h5"))
    assert not (tmp_path / "d.h5").exists()


def test_crop_must_suit_every_scale(pictures: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="multiple of 12"):
        prepare_dataset(settings(pictures, tmp_path / "d.h5", crop=50, scales=(3, 4)))


def test_check_dataset_rejects_foreign_files(pictures: Path, tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as h5:
        h5["x"] = np.zeros(3)
    with pytest.raises(DatasetError, match="not an animesr dataset"):
        check_dataset(foreign, 2)
    text = tmp_path / "text.h5"
    text.write_text("hello")
    with pytest.raises(DatasetError, match="not an HDF5 file"):
        check_dataset(text, 2)
    ours = tmp_path / "d.h5"
    prepare_dataset(settings(pictures, ours, scales=(2,)))
    with pytest.raises(DatasetError, match="no x4 pairs"):
        check_dataset(ours, 4)
    with h5py.File(ours, "a") as h5:
        h5.attrs["format_version"] = 99
    with pytest.raises(DatasetError, match="format 99"):
        check_dataset(ours, 2)


def test_a_folder_or_a_missing_file_as_dataset_is_named_for_what_it_is(tmp_path: Path) -> None:
    """A folder was reported as `no such dataset file`."""
    with pytest.raises(DatasetError, match=r"is a folder, not an HDF5 file from `animesr prepare`"):
        check_dataset(tmp_path, 2)
    with pytest.raises(DatasetError, match="no such dataset file"):
        check_dataset(tmp_path / "missing.h5", 2)


def test_content_id_follows_the_samples_not_the_name_or_the_time(pictures: Path, tmp_path: Path) -> None:
    prepare_dataset(settings(pictures, tmp_path / "d.h5", scales=(2,)))
    attrs = check_dataset(tmp_path / "d.h5", 2)
    same_samples = {**attrs, "created": "2000-01-01T00:00:00Z", "tool_version": "9", "scales": np.array([2, 4])}
    assert content_id(same_samples) == content_id(attrs)
    other_picture = json.loads(attrs["sources"])
    other_picture[0]["sha256"] = "0" * 64
    for changed in [{"crop": attrs["crop"] * 2}, {"stride": 7}, {"samples": 1},
                    {"sources": json.dumps(other_picture)}]:
        assert content_id({**attrs, **changed}) != content_id(attrs), changed


def test_cli_prepare_reports_and_fails_cleanly(pictures: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "d.h5"
    args = ["prepare", str(pictures), "-o", str(out), "--crop", "48", "--stride", "20"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "40 samples from 2 images" in result.output and "broken.png" in result.output
    again = runner.invoke(app, args)
    assert again.exit_code != 0 and "--overwrite" in again.output
    missing = runner.invoke(app, ["prepare", str(tmp_path / "nope"), "-o", str(tmp_path / "x.h5")])
    assert missing.exit_code != 0 and "no such file" in missing.output
    assert handled(missing) and handled(again), repr(missing.exception)
    for failed in (again, missing):  # no progress line (it was drawn before the inputs were checked)
        lines = failed.output.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), failed.output


def test_a_stop_always_ends_prepare_and_leaves_nothing(tmp_path: Path) -> None:
    """Ctrl-C, SIGTERM or SIGHUP (a closed terminal) at a random moment during the writes, 6 times:
    each run exits 130, 143 or 129 within seconds and leaves neither the output nor a temporary
    (SIGHUP used to kill it and leave the temporary; SIGTERM exited 130). Python's KeyboardInterrupt, landing in one of
    h5py's weak-reference callbacks, was printed and dropped about 1 time in 3, and the job went on
    to write the whole file."""
    source = tmp_path / "pics"
    source.mkdir()
    for seed in range(8):
        write_image(source / f"{seed}.png", smooth_image(400, 400, seed=seed))
    rng = random.Random(5)
    started: list[subprocess.Popen] = []
    interrupted = 0
    try:
        for number in range(6):  # one at a time: a run started early could finish before its signal
            folder = tmp_path / f"out{number}"
            folder.mkdir()
            command = [sys.executable, "-m", "animesr", "prepare", str(source), "-o", str(folder / "d.h5"),
                       "--crop", "64", "--stride", "16"]
            process = subprocess.Popen(dies_with_pytest(command), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                       text=True, start_new_session=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
            started.append(process)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not list(folder.glob(".d.h5.tmp-*")):
                assert process.poll() is None, process.stderr.read()
                time.sleep(0.02)
            time.sleep(rng.uniform(0.1, 0.4))
            if process.poll() is not None:  # finished first (a fast machine): nothing to interrupt
                continue
            stop = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)[number % 3]
            os.killpg(process.pid, stop)
            interrupted += 1
            try:
                _, stderr = process.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                pytest.fail(f"{folder.name}: still running 30 s after {stop.name}")
            if "samples from" in stderr:  # the job completed just as the signal came: a finished run
                interrupted -= 1
                continue
            assert process.returncode == 128 + stop, stderr[-2000:]
            said = "interrupted" if stop == signal.SIGINT else f"stopped by {stop.name}"
            assert said in stderr and "Traceback" not in stderr, stderr[-2000:]
            assert list(folder.iterdir()) == [], f"{folder.name}: left {list(folder.iterdir())}"
        assert interrupted >= 4, f"only {interrupted} of 6 runs were still running when interrupted"
    finally:  # whatever failed, no run outlives the test
        for process in started:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _run_prepare(source: Path, output: Path) -> subprocess.CompletedProcess:
    """In a child process: a crash (the segfault HDF5 could end in) must not take pytest down."""
    command = [sys.executable, "-m", "animesr", "prepare", str(source), "-o", str(output), "--crop", "48",
               "--stride", "8"]
    return subprocess.run(command, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_a_full_disk_is_one_line_and_leaves_nothing(pictures: Path, tmpfs) -> None:
    """On a full disk HDF5 printed its failed writes again and again as objects were freed (1,691
    tracebacks) and then crashed (exit 139)."""
    disk = tmpfs("512k")
    result = _run_prepare(pictures, disk / "d.h5")
    assert result.returncode == OutputError.exit_code, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert errors == [f"error: cannot write {disk / 'd.h5'}: No space left on device"], result.stderr[-3000:]
    assert list(disk.iterdir()) == []


def test_a_disk_that_fills_later_is_one_line_too(tmp_path: Path, tmpfs) -> None:
    """Incompressible pictures filling a 1 MB disk: HDF5 flushed buffered chunks at exit, after the
    error line, and crashed (exit 139). The discarded file's writes now go to the null device."""
    source = tmp_path / "noise"
    source.mkdir()
    for seed in range(6):
        noise = np.random.default_rng(seed).integers(0, 256, (256, 256, 3), dtype=np.uint8)
        write_image(source / f"{seed}.png", noise)
    disk = tmpfs("1m")
    command = [sys.executable, "-m", "animesr", "prepare", str(source), "-o", str(disk / "d.h5"), "--crop", "64",
               "--stride", "16"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == OutputError.exit_code, result.stderr[-3000:]
    assert f"error: cannot write {disk / 'd.h5'}: No space left on device" in result.stderr
    assert "Traceback" not in result.stderr and list(disk.iterdir()) == []


def test_an_unwritable_output_is_one_line(pictures: Path, tmp_path: Path, tmpfs) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("")
    runner = CliRunner()
    result = runner.invoke(app, ["prepare", str(pictures), "-o", str(a_file / "d.h5"), "--crop", "48"])
    assert result.exit_code == OutputError.exit_code and handled(result), (result.output, result.exception)
    read_only = tmpfs("1m", read_only=True)
    result = runner.invoke(app, ["prepare", str(pictures), "-o", str(read_only / "d.h5"), "--crop", "48"])
    assert result.exit_code == OutputError.exit_code and handled(result), (result.output, result.exception)
    assert "Read-only file system" in result.output and len(result.output.strip().splitlines()) <= 2


@pytest.mark.parametrize("option", [
    ["--crop", "0"], ["--crop", "50"], ["--stride", "0"], ["--scales", "5"], ["--scales", "x"],
    ["--min-size", "10"],
], ids=" ".join)
def test_every_bad_option_is_exit_2_before_any_work(pictures: Path, tmp_path: Path, option: list[str]) -> None:
    out = tmp_path / "d.h5"
    result = CliRunner().invoke(app, ["prepare", str(pictures), "-o", str(out), *option])
    assert result.exit_code == 2 and handled(result), (result.output, result.exception)
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and option[0] in errors[0], result.output
    assert "━" not in result.output and not out.exists()  # no progress bar: no work began
