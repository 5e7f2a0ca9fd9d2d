"""upscale-video on several inputs and folders (issue #16 item 1), and `--workers ray` where Ray is
missing (item 4). Generated clips, a tiny model; no Ray needed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from conftest import handled
from typer.testing import CliRunner

from animesr.errors import InputError
from animesr.video.batch import plan_videos
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


def test_plans_that_would_lose_an_output_are_refused_before_any_work(series: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="would both be written"):
        plan_videos([series / "ep01.mkv", series / "extras" / "op.mkv", series / "extras"], tmp_path, False, "mkv")
    with pytest.raises(InputError, match="would overwrite the input"):
        plan_videos([series / "ep01.mkv"], series, False, "mkv")
    with pytest.raises(InputError, match="no videos found.*--recursive"):
        plan_videos([tmp_path], tmp_path / "out", False, "mkv")
    bad = cli(str(series), "-o", str(tmp_path / "o"), "-s", "2", "--container", "avi")
    assert bad.exit_code == InputError.exit_code and handled(bad) and not (tmp_path / "o").exists()


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
    typo = cli(str(series), "-o", str(out), "-s", "2", "--workers", "rya")
    assert typo.exit_code == InputError.exit_code and "--workers must be local, ray or ray:ADDRESS" in typo.output
