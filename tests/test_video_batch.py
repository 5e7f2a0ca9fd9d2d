"""upscale-video on several inputs and folders (issue #16 item 1), `--workers ray` where Ray is
missing (item 4), and the Ray worker's own code run in this process (its seek to a chunk, its
chunk sent back as bytes). Generated clips, a tiny model; no Ray needed."""

from __future__ import annotations

import importlib.util
import os
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from conftest import handled
from typer.testing import CliRunner

from animesr.checkpoint import load_checkpoint
from animesr.config import InferenceSettings, VideoJob
from animesr.errors import InputError, ModelOutputError, OutputError
from animesr.video import commands
from animesr.video.batch import VideoTask, plan_videos, upscale_videos
from animesr.video.distributed import ChunkTask, ChunkWorker, VideoSpec, seek_decode_args
from animesr.video.ffmpeg import FrameReader
from animesr.video.pipeline import scan_timeline
from animesr.video.probe import probe
from animesr.video.workdir import file_identity
from animesr.video.ffmpeg import ffmpeg_exe
from test_video_pipeline import (clips, decoded_frames_digest, ffmpeg, lavfi_testsrc, make_clip, run,  # noqa: F401
                                 sine, tiny_model_file)


def cli(*args: str):
    from animesr.cli import _register, app

    _register()
    return CliRunner().invoke(app, ["upscale-video", *args])


@pytest.fixture(scope="module")
def series(ffmpeg: str, clips: Path) -> Path:
    """A folder like a season: two episodes (one with audio), a bonus sub-folder, a broken file
    and a file that is not a video."""
    folder = clips / "season"
    (folder / "extras").mkdir(parents=True, exist_ok=True)
    make_clip(ffmpeg, folder / "ep01.mkv", *lavfi_testsrc("25", 0.8), *sine(440, 48000, 0.8), "-c:v", "libx264",
              "-c:a", "flac")
    make_clip(ffmpeg, folder / "ep02.mp4", *lavfi_testsrc("24", 0.6), "-c:v", "libx264")
    make_clip(ffmpeg, folder / "extras" / "op.mkv", *lavfi_testsrc("25", 0.4), "-c:v", "libx264")
    (folder / "ep03.mkv").write_bytes(b"not a video at all" * 100)
    (folder / "notes.txt").write_text("not a video")
    return folder


def test_a_folder_is_upscaled_video_by_video_and_a_broken_one_is_reported(series: Path, tmp_path: Path) -> None:
    model = tiny_model_file(tmp_path)
    out = tmp_path / "out"
    args = [str(series), "-o", str(out), "-s", "2", "-m", str(model), "--recursive", "--chunk-frames", "8"]
    result = cli(*args)
    assert result.exit_code == 1 and handled(result), result.output
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "ep01.mkv", "ep02.mkv", "extras/op.mkv"]
    assert "done 3, skipped 0, failed 1" in result.output
    assert "ep03.mkv" in result.output.split("failed 1")[1], "the failed file is named at the end"
    # each video is the same as a single run with the same settings
    single = run(series / "ep02.mp4", tmp_path / "ep02-single.mkv", chunk_frames=8)
    assert single.verification.ok
    assert decoded_frames_digest(ffmpeg_exe(), out / "ep02.mkv") == decoded_frames_digest(ffmpeg_exe(), single.output)

    again = cli(*args)
    assert "done 0, skipped 3, failed 1" in again.output and again.exit_code == 1


def test_several_files_into_a_folder_and_one_file_as_before(series: Path, tmp_path: Path) -> None:
    model = tiny_model_file(tmp_path)
    out = tmp_path / "picked"
    result = cli(str(series / "ep01.mkv"), str(series / "extras" / "op.mkv"), "-o", str(out), "-s", "2",
                 "-m", str(model), "--container", "mp4")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["ep01.mp4", "op.mp4"]
    assert "done 2, skipped 0, failed 0" in result.output
    one = cli(str(series / "ep02.mp4"), "-o", str(tmp_path / "one.mkv"), "-s", "2", "-m", str(model))
    assert one.exit_code == 0 and (tmp_path / "one.mkv").is_file(), one.output
    into_folder = cli(str(series / "ep02.mp4"), "-o", str(out), "-s", "2", "-m", str(model))
    assert into_folder.exit_code == 0 and (out / "ep02.mkv").is_file(), "an existing folder takes the output"


def test_container_with_one_output_file_is_refused_not_ignored(series: Path, tmp_path: Path) -> None:
    """`-o one.mkv --container avi` ran and ignored --container (and its bad value)."""
    for value in ("avi", "mp4"):
        result = cli(str(series / "ep02.mp4"), "-o", str(tmp_path / "one.mkv"), "-s", "2", "--container", value)
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert result.exit_code == 2 and handled(result) and len(lines) == 1, result.output
        assert lines[0].startswith("error: --container is for an output folder; the extension of ")
    assert not list(tmp_path.iterdir())


def test_a_codec_the_folders_container_refuses_names_the_container_option(series: Path, tmp_path: Path) -> None:
    """The advice said "use an .mkv output", which a folder job cannot follow: its remedy is --container mkv."""
    result = cli(str(series), "-o", str(tmp_path / "out"), "-s", "2", "-m", str(tiny_model_file(tmp_path)),
                 "--container", "mp4", "--codec", "rawvideo")
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and handled(result) and len(lines) == 1, result.output
    assert lines[0].startswith("error: --codec rawvideo cannot go in mp4 (") and lines[0].endswith(
        "--container mkv for a folder) or another --codec"), lines


def test_an_output_ending_in_a_separator_is_a_folder_even_when_missing(series: Path, tmp_path: Path) -> None:
    model = tiny_model_file(tmp_path)
    out = tmp_path / "new" / "folder"
    result = cli(str(series / "extras" / "op.mkv"), "-o", f"{out}{os.sep}", "-s", "2", "-m", str(model))
    assert result.exit_code == 0, result.output
    assert out.is_dir() and sorted(p.name for p in out.iterdir()) == ["op.mkv"]


def test_plans_that_would_lose_an_output_are_refused_before_any_work(series: Path, tmp_path: Path) -> None:
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "op.mkv").write_bytes(b"another op.mkv")
    with pytest.raises(InputError, match="would both be written"):
        plan_videos([series / "ep01.mkv", tmp_path / "other" / "op.mkv", series / "extras"], tmp_path / "out", False,
                    "mkv")
    # one file reached twice (named, and in a named folder) is one input
    twice = plan_videos([series / "extras" / "op.mkv", series / "extras"], tmp_path / "out", False, "mkv")
    assert [task.source for task in twice] == [series / "extras" / "op.mkv"]
    with pytest.raises(OutputError, match="ep01.mkv: the output would replace the input; use another -o"):
        plan_videos([series / "ep01.mkv"], series, False, "mkv")
    with pytest.raises(InputError, match="no videos found.*--recursive"):
        plan_videos([tmp_path], tmp_path / "out", False, "mkv")
    bad = cli(str(series), "-o", str(tmp_path / "o"), "-s", "2", "--container", "avi")
    assert bad.exit_code == InputError.exit_code and handled(bad) and not (tmp_path / "o").exists()


def test_a_model_that_gives_nan_or_inf_stops_the_batch(tmp_path: Path) -> None:
    """A fault of the model failed every video in turn (exit 1); a fault of one video still does not
    stop the batch."""
    tasks = [VideoTask(tmp_path / f"{name}.mkv", tmp_path / "out" / f"{name}.mkv") for name in "abcd"]
    faults = {"a": InputError("a.mkv: cannot decode"), "c": ModelOutputError("the model m gave NaN")}
    started: list[str] = []

    def run_one(job: VideoJob) -> str:
        started.append(job.input.stem)
        if job.input.stem in faults:
            raise faults[job.input.stem]
        job.output.write_bytes(b"video")
        return "result"

    template = VideoJob(input=tmp_path / "x.mkv", output=tmp_path / "out" / "x.mkv", scale=2)
    with pytest.raises(ModelOutputError) as stopped:
        upscale_videos(template, tmp_path / "out", tasks, run_one)
    kept = "1 output(s) written before it are kept"
    assert str(stopped.value) == f"{tmp_path / 'c.mkv'}: the model m gave NaN; {kept}"
    assert started == ["a", "b", "c"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["b.mkv"]


def test_a_batch_that_writes_nothing_leaves_no_folder_it_created(tmp_path: Path) -> None:
    out = tmp_path / "new" / "out"
    tasks = [VideoTask(tmp_path / "a.mkv", out / "a.mkv"), VideoTask(tmp_path / "b.mkv", out / "sub" / "b.mkv")]

    def run_one(job: VideoJob) -> None:
        raise InputError(f"{job.input.name}: cannot decode")

    template = VideoJob(input=tmp_path / "x.mkv", output=out / "x.mkv", scale=2)
    summary = upscale_videos(template, out, tasks, run_one)
    assert summary.line() == "done 0, skipped 0, failed 2"
    assert not (tmp_path / "new").exists()


def test_a_folder_job_whose_model_overflows_is_one_line_and_exit_9(series: Path, tmp_path: Path) -> None:
    import torch

    from animesr.checkpoint import save_checkpoint
    from conftest import tiny_model

    model = tiny_model(2)
    with torch.no_grad():
        model.tail.weight.fill_(3e38)  # finite weights, NaN/inf output
    save_checkpoint(tmp_path / "huge.safetensors", model, value_range=1.0)
    out = tmp_path / "out"
    result = cli(str(series), "-o", str(out), "-s", "2", "-m", str(tmp_path / "huge.safetensors"),
                 "--chunk-frames", "8")
    flat = " ".join(result.output.split())
    assert result.exit_code == ModelOutputError.exit_code and handled(result), result.output
    assert f"error: {series}/" in flat and ": the model huge.safetensors gave NaN or infinite values" in flat
    assert "; nothing was written" in flat
    assert "[2/" not in result.output and "failed" not in result.output


def test_a_folder_job_the_model_stops_after_some_videos_says_what_it_got_through(series: Path,
                                                                                 tmp_path: Path) -> None:
    """The model's error came alone: what was done or skipped before it went unsaid."""
    import torch

    from animesr.checkpoint import save_checkpoint
    from conftest import tiny_model

    model = tiny_model(2)
    with torch.no_grad():
        model.tail.weight.fill_(3e38)
    save_checkpoint(tmp_path / "huge.safetensors", model, value_range=1.0)
    out = tmp_path / "out"
    out.mkdir()
    (out / "ep01.mkv").write_bytes(b"an earlier output")  # skipped: the model meets ep02 first
    result = cli(str(series), "-o", str(out), "-s", "2", "-m", str(tmp_path / "huge.safetensors"))
    assert result.exit_code == ModelOutputError.exit_code and handled(result), result.output
    lines = [line for line in result.output.splitlines() if line.startswith(("done ", "error: "))]
    assert lines[0] == f"done 0, skipped 1, failed 0 → {out}" and lines[1].startswith(f"error: {series}/ep02.mp4: ")
    assert len(lines) == 2, result.output


def test_a_folder_job_into_its_own_folder_runs_again(series: Path, tmp_path: Path) -> None:
    """The second run took the first run's ep02.mkv for an input that ep02.mp4's output would replace: exit 3."""
    import shutil

    folder = tmp_path / "season"
    folder.mkdir()
    shutil.copy(series / "ep02.mp4", folder / "ep02.mp4")
    model = str(tiny_model_file(tmp_path))
    first = cli(str(folder), "-o", str(folder), "-s", "2", "-m", model)
    assert first.exit_code == 0 and (folder / "ep02.mkv").is_file(), first.output
    again = cli(str(folder), "-o", str(folder), "-s", "2", "-m", model)
    flat = " ".join(again.output.split())
    assert again.exit_code == 0 and handled(again), again.output
    assert f"{folder / 'ep02.mkv'} is left out: it is where {folder / 'ep02.mp4'}'s output goes" in flat
    assert "done 0, skipped 1, failed 0" in flat
    replaced = cli(str(folder), "-o", str(folder), "-s", "2", "-m", model, "--overwrite")
    assert replaced.exit_code == 3 and "would replace the input" in replaced.output  # never over a possible source


@pytest.mark.parametrize("output", ["folder", "folder/", "file"])
def test_an_output_onto_its_input_is_the_same_output_error_in_every_mode(series: Path, tmp_path: Path,
                                                                         output: str) -> None:
    """A folder output gave 2 ("would overwrite the input"), a file output 3 ("OUTPUT is the input
    file"), upscale-image 3: one class (OutputError, 3) and one wording, before any work."""
    source = series / "ep01.mkv"
    target = {"folder": str(series), "folder/": f"{series}{os.sep}", "file": str(source)}[output]
    before = source.read_bytes()
    result = cli(str(source), "-o", target, "-s", "2", "-m", str(tiny_model_file(tmp_path)), "--overwrite")
    flat = " ".join(result.output.split())
    assert result.exit_code == OutputError.exit_code and handled(result), result.output
    assert f"error: {source}: the output would replace the input; use another -o" in flat
    assert len(result.output.strip().splitlines()) == 1 and source.read_bytes() == before


def test_workers_ray_without_ray_says_how_to_install_it_before_any_work(series: Path, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else
                        real_find_spec(name, *a))
    out = tmp_path / "out"
    result = cli(str(series), "-o", str(out), "-s", "2", "--workers", "ray")
    assert result.exit_code == InputError.exit_code and handled(result)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == ['error: the Ray executor needs Ray, which is not installed: pip install "animesr[ray]"'], lines
    assert not out.exists()
    monkeypatch.undo()
    if importlib.util.find_spec("ray") is not None:
        gpu = cli(str(series), "-o", str(out), "-s", "2", "--workers", "ray", "--device", "cuda:1")
        assert gpu.exit_code == InputError.exit_code and "each Ray worker gets a GPU of its own" in gpu.output
    typo = cli(str(series), "-o", str(out), "-s", "2", "--workers", "rya")
    assert typo.exit_code == InputError.exit_code and "--workers must be local, ray or ray:ADDRESS" in typo.output


# ---- the Ray worker, in this process ---------------------------------------------------------


def test_the_worker_sends_bytes_and_asks_for_the_source_where_it_sees_neither(series: Path, tmp_path: Path) -> None:
    """No token in the work folder → the chunk as bytes; no same source at its path → asks for it."""
    model = tiny_model_file(tmp_path)
    source = series / "ep01.mkv"
    identity = file_identity(source)
    job = VideoJob(input=source, output=tmp_path / "o.mkv", scale=2, chunk_frames=7)
    worker = ChunkWorker(InferenceSettings(device="cpu"), None, load_checkpoint(model))
    spec = VideoSpec(probe(source), job, (0, 0), Fraction(25), Fraction(1, 1000), tmp_path, "token",
                     identity["size"], identity["sha256"])
    result = worker.run(spec, ChunkTask(1, 7, 14, "N*40"), [])
    assert result.frames == 7 and result.shared_path is None and result.data.startswith(b"nut/multimedia")
    assert not list(tmp_path.glob(".worker-*")), "nothing is written in a work folder the worker does not share"
    (tmp_path / "workers-see-this").write_text("token")
    shared = worker.run(spec, ChunkTask(1, 7, 14, "N*40"), [])
    assert shared.data is None and (tmp_path / shared.shared_path).read_bytes() == result.data
    elsewhere = replace(spec, source_sha256="0" * 64)  # the file at that path is another one
    assert worker.run(elsewhere, ChunkTask(1, 7, 14, "N*40"), []).needs_source


@pytest.mark.parametrize("name, args, least_seeks", [
    ("gop.mkv", ["-c:v", "libx264", "-g", "6", "-bf", "2"], 6),  # short GOPs with B-frames: real seeks
    ("vfr.mp4", ["-vf", "setpts='PTS+if(gt(N,12),0.05/TB,0)+if(gt(N,30),0.02/TB,0)'", "-fps_mode", "passthrough",
                 "-c:v", "libx264", "-g", "7", "-bf", "3"], 6),
    ("dvd.vob", ["-c:v", "mpeg2video", "-g", "12", "-bf", "2", "-f", "vob"], 0),  # imprecise seeks: refused
])
def test_a_chunk_decoded_from_a_seek_has_exactly_the_frames_of_a_whole_decode(ffmpeg: str, clips: Path, name: str,
                                                                              args: list[str],
                                                                              least_seeks: int) -> None:
    source = make_clip(ffmpeg, clips / f"seek-{name}", *lavfi_testsrc("25", 2.0), *args)
    info = probe(source)
    job = VideoJob(input=source, output=clips / "unused.mkv", scale=2)
    timeline = scan_timeline(info, job)
    spec = VideoSpec(info, job, (0, 0), Fraction(25), timeline.time_base, clips, "", 0, "", seekable=True)
    whole = _frames(commands.decode_args(info, job, 0), info, timeline.count)
    seeked = 0
    tried: dict[bool, ChunkTask] = {}  # a chunk whose seek was let through (True), refused (False)
    for start in range(1, timeline.count - 7, 6):
        stop = start + 7
        task = ChunkTask(0, start, stop, "", timeline.pts[start:stop], timeline.pts[start - 1])
        decode = seek_decode_args(spec, job, task)
        tried.setdefault(decode is not None, task)
        if decode is not None:
            seeked += 1
            frames = _frames(decode, info, stop - start)
            assert all(np.array_equal(a, b) for a, b in zip(frames, whole[start:stop], strict=True)), start
    assert seeked >= least_seeks, "the check lets the seeks through on a well-indexed file"
    task = ChunkTask(0, 13, 20, "", timeline.pts[13:20], timeline.pts[12])
    half_step = (timeline.pts[20] - timeline.pts[19]) // 2
    moved = replace(task, pts=(*task.pts[:-1], task.pts[-1] + half_step))  # times the seek will not give
    assert seek_decode_args(spec, job, moved) is None, "frames at other times than the chunk's: no seek"
    assert seek_decode_args(replace(spec, seekable=False), job, task) is None, "--fps, --deinterlace, --start: never"

    # the worker checks a seek while it upscales from it; a seek the check refuses (most of the
    # .vob's) is done again from the start: either way the chunk of a decode from the start
    worker = ChunkWorker(InferenceSettings(device="cpu"), None, load_checkpoint(tiny_model_file(clips)))
    identity = file_identity(source)
    spec = replace(spec, source_size=identity["size"], source_sha256=identity["sha256"], work_dir=clips / "none")
    for let_through, task in tried.items():
        seeked = worker.run(spec, task, [])
        whole = worker.run(replace(spec, seekable=False), task, [])
        assert seeked.seeked == let_through and not whole.seeked
        assert seeked.data == whole.data and seeked.frames == whole.frames == 7


def _frames(args: list[str], info, count: int) -> list[np.ndarray]:
    reader = FrameReader(args, info.width, info.height)
    try:
        return [reader.read() for _ in range(count)]
    finally:
        reader.kill()


def test_a_ray_address_nothing_answers_on_is_one_line_at_once(series: Path, tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="needs Ray: pip install 'animesr[ray]'")
    out = tmp_path / "out.mkv"
    result = cli(str(series / "ep02.mp4"), "-o", str(out), "-s", "2", "-m", str(tiny_model_file(tmp_path)),
                 "--workers", "ray:127.0.0.1:1")
    assert result.exit_code == 7 and handled(result), result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == ["error: cannot reach the Ray cluster at 127.0.0.1:1: Connection refused"], lines
    assert not out.exists() and not list(tmp_path.glob("out.mkv*"))


@pytest.mark.parametrize(("extra", "code", "words"), [
    (["-m", "no-such-model.safetensors"], 4, "model file not found"),
    (["--container", "webm"], 2, "cannot go in webm"),
    (["--device", "cuda:3"], 7, "error:"),  # "no CUDA GPU" here, "there is no cuda:3" on a one-GPU machine
    (["--preset", "foo"], 2, "change --preset"),
    (["--codec", "rawvideo", "--container", "mp4"], 2, "--codec rawvideo cannot go in mp4"),
])
def test_a_folder_job_checks_what_every_video_shares_before_the_first(series: Path, tmp_path: Path,
                                                                     extra: list[str], code: int, words: str) -> None:
    """Each of these used to fail every video in turn (exit 1), after creating the output folder."""
    out = tmp_path / "out"
    args = [str(series), "-o", str(out), "-s", "2", "-m", str(tiny_model_file(tmp_path)), *extra]
    result = cli(*args)
    flat = " ".join(result.output.split())
    assert result.exit_code == code and words in flat and handled(result), result.output
    assert "[1/" not in result.output and not out.exists()


def test_a_recursive_job_with_its_output_inside_the_input_can_run_again(series: Path, tmp_path: Path) -> None:
    """The second run took the first run's outputs for inputs and refused them as overwriting."""
    import shutil

    folder = tmp_path / "season"
    folder.mkdir()
    shutil.copy(series / "extras" / "op.mkv", folder / "op.mkv")
    args = [str(folder), "-o", str(folder / "up"), "-s", "2", "-m", str(tiny_model_file(tmp_path)), "--recursive"]
    assert cli(*args).exit_code == 0
    again = cli(*args)
    assert again.exit_code == 0 and "done 0, skipped 1, failed 0" in again.output, again.output
