"""upscale-video under faults: resuming only onto the same source and model, damaged chunks,
truncated sources, two runs on one output, an unwritable output folder. Generated clips and a
tiny model; each test is the regression test of a defect of issue #11."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from animesr.checkpoint import load_checkpoint, save_checkpoint
from animesr.config import EncodeSettings
from animesr.errors import InputError, OutputError, UsageError, VerificationError
from animesr.video import streams
from animesr.video.pipeline import VideoCallbacks
from animesr.video.preflight import check_streams_go_in
from animesr.video.probe import StreamInfo, probe
from animesr.video.streams import StreamAction, plan_streams
from animesr.video.workdir import lock_path, work_folder_path
from conftest import dies_with_pytest, handled
from test_video_pipeline import (Recorder, clips, decoded_frames_digest, ffmpeg, leftovers,  # noqa: F401 (fixtures)
                                 lavfi_testsrc, make_clip, rich_mkv, run, sine, tiny_model_file)

_MIB = 1 << 20


@pytest.fixture(scope="module")
def clip50(ffmpeg: str, clips: Path) -> Path:
    """50 frames at 25 fps with audio."""
    return make_clip(ffmpeg, clips / "fifty.mkv", *lavfi_testsrc("25", 2.0), *sine(440, 48000, 2.0),
                     "-c:v", "libx264", "-c:a", "flac")


def cli(*args: str):
    from animesr.cli import _register, app

    _register()
    return CliRunner().invoke(app, ["upscale-video", *args])


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


# ---- the work folder's identity -------------------------------------------------------------


def test_resume_refuses_the_same_weights_with_another_value_range(clip50: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.mkv"
    with pytest.raises(KeyboardInterrupt):
        run(clip50, out, Recorder(stop_after=25), chunk_frames=10)
    model = tiny_model_file(tmp_path)
    loaded = load_checkpoint(model)
    assert loaded.value_range == 1.0
    save_checkpoint(model, loaded.model, value_range=255.0)  # same tensors, another input range
    with pytest.raises(OutputError, match="model"):
        run(clip50, out, chunk_frames=10)
    result = run(clip50, out, chunk_frames=10, resume=False)
    assert result.resumed_from == 0 and result.verification.ok


def test_resume_refuses_a_source_changed_in_the_middle(ffmpeg: str, clips: Path, tmp_path: Path) -> None:
    """Two sources of the same size and the same first and last MiB, differing in frames 30-42."""
    common = [*lavfi_testsrc("24", 3.0, "160x120")]
    codec = ["-c:v", "rawvideo", "-pix_fmt", "rgb24"]
    original = make_clip(ffmpeg, clips / "raw-a.nut", *common, *codec)
    edited = make_clip(ffmpeg, clips / "raw-b.nut", *common, "-vf",
                       "drawbox=x=10:y=10:w=60:h=40:color=red:t=fill:enable='between(t,1.25,1.75)'", *codec)
    a, b = original.read_bytes(), edited.read_bytes()
    assert len(a) == len(b) > 2 * _MIB and a[:_MIB] == b[:_MIB] and a[-_MIB:] == b[-_MIB:] and a != b
    source = tmp_path / "episode.nut"
    shutil.copyfile(original, source)
    out = tmp_path / "out.mkv"
    with pytest.raises(KeyboardInterrupt):
        run(source, out, Recorder(stop_after=20), chunk_frames=8)
    shutil.copyfile(edited, source)  # replaced in place, as a re-download or a re-encode would
    with pytest.raises(OutputError, match="source"):
        run(source, out, chunk_frames=8)
    assert work_folder_path(out).is_dir(), "the refused work folder is kept"
    renamed = tmp_path / "episode-copy.nut"
    shutil.copyfile(original, renamed)  # the same bytes under another name and mtime: the same source
    result = run(renamed, out, chunk_frames=8)
    assert result.resumed_from == 16 and result.verification.ok


# ---- damaged chunks and failed verification -------------------------------------------------


def test_a_damaged_chunk_fails_verification_is_never_published_and_is_redone(ffmpeg: str, clip50: Path,
                                                                            tmp_path: Path) -> None:
    clean = run(clip50, tmp_path / "clean.mkv", chunk_frames=10)
    out = tmp_path / "out.mkv"
    work = work_folder_path(out)

    def truncate_a_chunk() -> None:  # the disk loses the end of chunk 2 before the mux
        chunk = work / "chunk_00002.nut"
        chunk.write_bytes(chunk.read_bytes()[: chunk.stat().st_size // 2])

    damaged = VideoCallbacks(on_finishing=truncate_a_chunk)
    tiny_model_file(tmp_path)
    from animesr.config import VideoJob
    from animesr.video.pipeline import upscale_video

    job = VideoJob(input=clip50, output=out, scale=2, model=tmp_path / "tiny-x2.safetensors", chunk_frames=10)
    with pytest.raises(VerificationError, match=r"frames: 50 in, \d+ out") as caught:
        upscale_video(job, damaged)
    assert "\n" not in str(caught.value)
    assert not out.exists(), "an output that failed verification is never published"
    assert (tmp_path / "out.mkv.partial").is_file(), "it is kept aside for inspection, as the message says"
    assert work.is_dir(), "the work folder is kept for the next run"

    recorder = Recorder()
    result = run(clip50, out, recorder, chunk_frames=10)
    assert any("chunk 2" in w and "damaged" in w for w in recorder.warnings), recorder.warnings
    assert result.resumed_from == 20 and result.verification.ok
    assert decoded_frames_digest(ffmpeg, out) == decoded_frames_digest(ffmpeg, tmp_path / "clean.mkv")
    assert result.reused == clean.reused
    assert not leftovers(out)[1:]


# ---- truncated sources ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def truncated_mp4(ffmpeg: str, clips: Path) -> Path:
    """The index at the front (faststart) says 50 frames; only the first 40 % of the bytes remain."""
    whole = make_clip(ffmpeg, clips / "faststart.mp4", *lavfi_testsrc("25", 2.0), *sine(440, 48000, 2.0),
                      "-c:v", "libx264", "-c:a", "aac", "-movflags", "+faststart")
    cut = clips / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 4 // 10])
    return cut


def test_a_truncated_source_is_refused_unless_accepted(truncated_mp4: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.mkv"
    with pytest.raises(InputError, match=r"truncated.*2\.000 s.*--accept-truncated") as caught:
        run(truncated_mp4, out)
    assert "\n" not in str(caught.value)
    assert not leftovers(out)

    recorder = Recorder()
    result = run(truncated_mp4, out, recorder, accept_truncated=True)
    assert 5 < result.frames < 40 and result.verification.ok
    assert any("truncated" in w for w in recorder.warnings), recorder.warnings


def test_cli_truncated_source_exit_code_and_accept_option(truncated_mp4: Path, tmp_path: Path) -> None:
    model = tiny_model_file(tmp_path)
    out = tmp_path / "out.mkv"
    refused = cli(str(truncated_mp4), "-o", str(out), "-s", "2", "-m", str(model))
    assert refused.exit_code == InputError.exit_code, refused.output
    assert error_lines(refused.output) == [line for line in error_lines(refused.output) if "error:" in line]
    assert len(error_lines(refused.output)) == 1 and "truncated" in refused.output
    accepted = cli(str(truncated_mp4), "-o", str(out), "-s", "2", "-m", str(model), "--accept-truncated")
    assert accepted.exit_code == 0, accepted.output
    assert "warning:" in accepted.output and "truncated" in accepted.output and out.is_file()


# ---- two runs on one output -----------------------------------------------------------------

_SLOW_RUN = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from animesr.config import VideoJob
    from animesr.video.pipeline import VideoCallbacks, upscale_video

    def on_frames(done, reused):
        if done == 1:
            print("running", flush=True)
            time.sleep(300)

    source, output, model = map(Path, sys.argv[1:4])
    upscale_video(VideoJob(input=source, output=output, scale=2, model=model, chunk_frames=10),
                  VideoCallbacks(on_frames=on_frames))
""")


def _wait_for_line(process: subprocess.Popen, expected: str, seconds: float) -> None:
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(process.stdout.readline()), daemon=True)
    reader.start()
    reader.join(seconds)
    if not lines or lines[0].strip() != expected:
        raise AssertionError(f"the first run did not start: {lines} {process.poll()}")


def test_a_second_run_on_the_same_output_is_refused_while_the_first_holds_the_lock(clip50: Path,
                                                                                  tmp_path: Path) -> None:
    model = tiny_model_file(tmp_path)
    out = tmp_path / "out.mkv"
    script = tmp_path / "slow_run.py"
    script.write_text(_SLOW_RUN)
    first = subprocess.Popen(dies_with_pytest([sys.executable, str(script), str(clip50), str(out), str(model)]),
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        _wait_for_line(first, "running", 180)
        second = cli(str(clip50), "-o", str(out), "-s", "2", "-m", str(model), "--chunk-frames", "10")
        assert second.exit_code == OutputError.exit_code, second.output
        lines = error_lines(second.output)
        assert len(lines) == 1 and "another" in lines[0] and out.name in lines[0], lines
        assert work_folder_path(out).is_dir() and not out.exists(), "the first run's work is untouched"
        first.send_signal(signal.SIGKILL)  # a crash: the lock dies with its process
        first.wait(30)
        result = run(clip50, out, chunk_frames=10)
        assert result.verification.ok and result.frames == 50
        assert not lock_path(out).exists() and not leftovers(out)[1:]
    finally:
        if first.poll() is None:
            first.kill()
        first.wait()


# ---- an output folder that cannot be written ------------------------------------------------


def _run_in_read_only_folder(folder: Path, args: list[str]) -> subprocess.CompletedProcess:
    """The CLI in a child process that cannot write in `folder`: mode 555 for a normal user; for
    root (whom permission bits do not stop), a read-only bind mount in a private mount namespace."""
    command = [sys.executable, "-m", "animesr", *args]
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            return subprocess.run(command, capture_output=True, text=True, timeout=300)
        finally:
            folder.chmod(0o755)
    if shutil.which("unshare") is None:
        pytest.skip("running as root without unshare: no way to make a folder read-only")
    probe = subprocess.run(["unshare", "--mount", "sh", "-c", 'mount -o bind,ro "$1" "$1"', "sh", str(folder)],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a read-only bind mount here: {probe.stderr.strip()}")
    wrapped = ["unshare", "--mount", "sh", "-c", 'mount -o bind,ro "$1" "$1" && shift && exec "$@"', "sh",
               str(folder), *command]
    return subprocess.run(wrapped, capture_output=True, text=True, timeout=300)


def test_an_unwritable_output_folder_is_one_line_and_exit_3(clip50: Path, tmp_path: Path) -> None:
    model = tiny_model_file(tmp_path)
    folder = tmp_path / "read-only"
    folder.mkdir()
    result = _run_in_read_only_folder(folder, ["upscale-video", str(clip50), "-o", str(folder / "out.mkv"),
                                               "-s", "2", "-m", str(model)])
    lines = error_lines(result.stderr)
    assert result.returncode == OutputError.exit_code, result.stderr
    assert "Traceback" not in result.stderr
    assert len(lines) == 1 and lines[0].startswith("error:") and str(folder) in lines[0], lines
    assert list(folder.iterdir()) == []


# ---- encoding options -------------------------------------------------------------------------


def test_a_pixel_format_the_encoder_does_not_take_is_refused_before_any_work(clip50: Path, tmp_path: Path) -> None:
    """ffmpeg would encode rgb24 as yuv444p with libx264, silently."""
    out = tmp_path / "rgb.mkv"
    result = cli(str(clip50), "-o", str(out), "-s", "2", "-m", str(tiny_model_file(tmp_path)), "--pix-fmt", "rgb24")
    assert result.exit_code == 2 and handled(result), result.output
    lines = error_lines(result.output)
    assert len(lines) == 1 and lines[0].startswith("error: --pix-fmt rgb24 is not one that --codec libx264 takes: "
                                                   "use one of "), lines
    accepted = set(lines[0].split("use one of ", 1)[1].split())
    assert {"yuv420p", "yuv444p", "yuv420p10le"} <= accepted and "rgb24" not in accepted
    assert not leftovers(out) and not out.exists()


def test_a_bad_preset_is_blamed_on_the_preset_not_on_the_codec(clip50: Path, tmp_path: Path) -> None:
    out = tmp_path / "preset.mkv"
    result = cli(str(clip50), "-o", str(out), "-s", "2", "-m", str(tiny_model_file(tmp_path)), "--preset", "foo")
    assert result.exit_code == 2 and handled(result), result.output
    lines = error_lines(result.output)
    assert len(lines) == 1, lines
    assert "--preset foo --pix-fmt yuv420p --crf 18" in lines[0] and "preset/tune foo" in lines[0]
    assert lines[0].endswith(": change --preset") and "always works" not in lines[0]
    assert not leftovers(out) and not out.exists()


def test_a_codec_the_container_refuses_fails_before_any_frame(clip50: Path, tmp_path: Path) -> None:
    """MP4 has no tag for raw video: ffmpeg said so only when muxing, after every frame was upscaled."""
    out = tmp_path / "raw.mp4"
    result = cli(str(clip50), "-o", str(out), "-s", "2", "-m", str(tiny_model_file(tmp_path)), "--codec", "rawvideo")
    assert result.exit_code == 2 and handled(result), result.output
    lines = error_lines(result.output)
    assert len(lines) == 1 and lines[0].startswith("error: --codec rawvideo cannot go in mp4 (") and lines[0].endswith(
        "): use an MKV output (.mkv, or --container mkv for a folder) or another --codec"), lines
    assert not leftovers(out) and not out.exists() and not work_folder_path(out).exists()


def test_an_output_folder_that_is_a_file_and_an_fps_that_leaves_no_frame_say_so(clip50: Path,
                                                                                tmp_path: Path) -> None:
    model = str(tiny_model_file(tmp_path))
    (tmp_path / "notes.txt").write_text("a file")
    result = cli(str(clip50), "-o", str(tmp_path / "notes.txt" / "x.mkv"), "-s", "2", "-m", model)
    assert result.exit_code == 3 and handled(result), result.output
    notes = tmp_path / "notes.txt"
    assert error_lines(result.output) == [f"error: cannot write {notes / 'x.mkv'}: {notes} is a file, not a folder"]

    result = cli(str(clip50), "-o", str(tmp_path / "slow.mkv"), "-s", "2", "-m", model, "--fps", "0.1",
                 "--start", "1.5")
    assert result.exit_code == 2 and handled(result), result.output
    assert error_lines(result.output) == ["error: fifty.mkv has no decodable video frames in the --start/--duration "
                                          "range at --fps 1/10"], result.output


def _audio_clip(ffmpeg: str, clips: Path, codec: str) -> Path:
    """Ten frames and half a second of a sine in `codec`, in Matroska."""
    encoder = {"opus": "libopus"}.get(codec, codec)
    return make_clip(ffmpeg, clips / f"audio-{codec}.mkv", *lavfi_testsrc("25", 0.4), *sine(440, 48000, 0.5),
                     "-c:v", "libx264", "-c:a", encoder, "-strict", "-2")


def test_truehd_into_mp4_is_converted_before_any_frame_not_refused_after_all_of_them(ffmpeg: str, clips: Path,
                                                                                     tmp_path: Path) -> None:
    """MP4 takes TrueHD only as an experiment: the mux failed (exit 6) after every frame was upscaled."""
    out = tmp_path / "truehd.mp4"
    result = cli(str(_audio_clip(ffmpeg, clips, "truehd")), "-o", str(out), "-s", "2", "-m",
                 str(tiny_model_file(tmp_path)), "--device", "cpu")
    assert result.exit_code == 0 and handled(result), result.output
    assert "warning: stream #1 audio truehd converted: mp4 cannot hold truehd audio: converted to AAC" in result.output
    assert [s.codec for s in probe(out).streams if s.kind == "audio"] == ["aac"]


@pytest.mark.parametrize("codec", ["truehd", "flac", "opus"])
def test_audio_that_mov_refuses_is_converted(ffmpeg: str, clips: Path, tmp_path: Path, codec: str) -> None:
    """MOV had MP4's audio list, but its muxer takes TrueHD, FLAC and Opus "only in MP4"."""
    recorder = Recorder()
    out = tmp_path / f"{codec}.mov"
    result = run(_audio_clip(ffmpeg, clips, codec), out, recorder, encode=EncodeSettings(preset="ultrafast"))
    assert result.verification.ok, result.verification.lines()
    assert f"stream #1 audio {codec} converted: mov cannot hold {codec} audio: converted to AAC" in recorder.warnings
    assert [s.codec for s in probe(out).streams if s.kind == "audio"] == ["aac"]


def test_a_copy_the_muxer_refuses_is_found_by_a_trial_before_any_frame(ffmpeg: str, clips: Path, tmp_path: Path,
                                                                       monkeypatch) -> None:
    """Should the table promise a codec the muxer refuses, a tenth of a second copied into the
    container first turns the refusal into a conversion, in the muxer's own words."""
    mp4 = streams._LIMITS["mp4"]
    monkeypatch.setitem(streams._LIMITS, "mp4", replace(mp4, audio=mp4.audio | {"truehd"}))
    recorder = Recorder()
    result = run(_audio_clip(ffmpeg, clips, "truehd"), tmp_path / "trial.mp4", recorder,
                 encode=EncodeSettings(preset="ultrafast"))
    assert result.verification.ok, result.verification.lines()
    assert recorder.warnings == ["stream #1 audio truehd converted: mp4 cannot hold truehd audio (truehd in MP4 "
                                 "support is experimental, add '-strict -2' if you want to use it.): converted to AAC"]
    assert [a.codec for a in result.streams] == ["aac"]


def test_a_copied_stream_the_muxer_refuses_and_that_cannot_be_converted_is_one_line(rich_mkv: Path) -> None:
    subtitles = StreamAction(StreamInfo(3, "subtitle", "subrip"), "copy")
    with pytest.raises(UsageError) as refused:
        check_streams_go_in(rich_mkv, (StreamAction(StreamInfo(1, "audio", "flac"), "copy"), subtitles), "mp4",
                            beside=None)
    assert str(refused.value) == ("stream #3 subtitle subrip cannot go in mp4 (Could not find tag for codec subrip, "
                                  "codec not currently supported in container): use an MKV output (.mkv, or "
                                  "--container mkv for a folder)")


def test_streams_the_muxer_takes_cost_one_short_trial_and_stay_copied(rich_mkv: Path, monkeypatch) -> None:
    from animesr.video import preflight

    real, trials = preflight.run_tool, []
    monkeypatch.setattr(preflight, "run_tool", lambda args: trials.append(args) or real(args))
    actions = plan_streams(probe(rich_mkv).streams, "matroska")
    assert check_streams_go_in(rich_mkv, actions, "matroska", beside=None) == actions
    assert len(trials) == 1 and trials[0][trials[0].index("-t") + 1] == "0.1"


@pytest.fixture(scope="module")
def with_fonts(ffmpeg: str, clips: Path) -> Path:
    """A second at 10 fps, AAC, and three font attachments, in Matroska: a fansub file in small."""
    fonts = []
    for n in range(3):
        font = clips / f"font{n}.ttf"
        font.write_bytes(bytes(range(256)) * 8)
        fonts += ["-attach", str(font), f"-metadata:s:t:{n}", "mimetype=application/x-truetype-font"]
    return make_clip(ffmpeg, clips / "fonts.mkv", *lavfi_testsrc("10", 1.0), *sine(440, 44100, 1.0), *fonts,
                     "-c:v", "libx264", "-c:a", "aac")


@pytest.mark.parametrize("container", ["mkv", "mp4"])
def test_mux_trials_leave_attachments_out_and_write_beside_the_output(with_fonts: Path, tmp_path: Path,
                                                                      monkeypatch, container: str) -> None:
    """A refused combined trial tried each copied stream on its own, every font of a fansub file
    included, each written into $TMPDIR (a full /tmp read as a refusal)."""
    from animesr.video import preflight

    muxer = {"mkv": "matroska", "mp4": "mp4"}[container]
    real, trials = preflight.run_tool, []

    def run_tool(args: list[str]) -> subprocess.CompletedProcess:
        trials.append(args)
        if len(trials) == 1:  # the combined trial refused: each stream is tried on its own
            return subprocess.CompletedProcess(args, 1, "", f"[{muxer} @ 0x1] a refusal\n")
        return real(args)

    monkeypatch.setattr(preflight, "run_tool", run_tool)
    out = tmp_path / f"out.{container}"
    result = run(with_fonts, out, encode=EncodeSettings(preset="ultrafast"))
    assert result.verification.ok and result.verification.audio, result.verification.lines()
    attachments = [s.index for s in probe(with_fonts).streams if s.kind == "attachment"]
    assert len(attachments) == 3
    copies = [args for args in trials if "copy" in args]
    assert len(copies) == 3, "combined (refused), the audio alone, combined again"
    assert all(f"0:{index}" not in args for args in copies for index in attachments)
    assert {Path(args[-1]).parent for args in trials} == {tmp_path}
    assert all(Path(args[-1]).name.startswith(f".out.{container}.trial-") for args in trials)
    assert not [p for p in tmp_path.iterdir() if ".trial-" in p.name]
    kept = [s.kind for s in probe(out).streams].count("attachment")
    assert kept == (3 if container == "mkv" else 0)


def test_an_error_found_before_the_work_is_the_whole_output(clip50: Path, tmp_path: Path) -> None:
    """The progress display opened before the checks left a blank line after the error."""
    result = cli(str(clip50), "-o", str(tmp_path / "late.mkv"), "-s", "2", "-m", str(tiny_model_file(tmp_path)),
                 "--start", "5")
    assert result.exit_code == 2 and handled(result), result.output
    assert result.output == "error: --start 5 is past the end of fifty.mkv (2.000 s)\n", repr(result.output)


def test_crf_given_to_a_codec_without_a_quality_setting_is_warned_about(clip50: Path, tmp_path: Path) -> None:
    """--codec ffv1 --crf 10 ran without a word, the --crf silently ignored."""
    model = str(tiny_model_file(tmp_path))
    for extra, warned in ((["--crf", "10"], True), ([], False)):
        out = tmp_path / f"lossless{len(extra)}.mkv"
        result = cli(str(clip50), "-o", str(out), "-s", "2", "-m", model, "--codec", "ffv1", "--duration", "0.2",
                     *extra)
        assert result.exit_code == 0 and out.is_file(), result.output
        said = "warning: --crf has no effect with --codec ffv1: it has no constant-quality setting" in result.output
        assert said == warned, result.output


def test_the_advice_names_the_option_at_fault_or_another_codec() -> None:
    from animesr.config import EncodeSettings
    from animesr.video.preflight import _advice

    assert _advice("Cannot load libcuda.so.1", EncodeSettings(codec="h264_nvenc")) == (
        "choose another --codec (libx264 always works)")
    assert _advice("Specified pixel format yuv422p is not supported", EncodeSettings(codec="h264_nvenc")) == (
        "change --pix-fmt")
    assert _advice("something else went wrong", EncodeSettings()) == "change --preset, --pix-fmt or --crf"


def test_pixel_formats_come_from_the_first_encoder_described_or_from_all_ffmpeg_writes() -> None:
    from animesr.video.ffmpeg import encoder_pixel_formats, parse_pixel_formats

    described = ("Encoder libx264 [libx264 H.264]:\n    General capabilities: dr1\n"
                 "    Supported pixel formats: yuv420p nv12\nlibx264 AVOptions:\n"
                 "Encoder libx264rgb [libx264 H.264 RGB]:\n    Supported pixel formats: bgr0 rgb24\n")
    assert parse_pixel_formats(described) == {"yuv420p", "nv12"}
    assert parse_pixel_formats("Encoder a [A]:\nEncoder b [B]:\n    Supported pixel formats: rgb24\n") == set()
    assert {"rgb24", "yuv420p", "gray"} <= encoder_pixel_formats("rawvideo"), "rawvideo lists none: any it writes"


def test_the_default_pixel_format_still_works_with_encoders_that_take_only_its_semi_planar_twin(monkeypatch) -> None:
    """QSV lists nv12 (and qsv) only: the default yuv420p, the same samples, must not be refused."""
    from animesr.config import EncodeSettings
    from animesr.errors import UsageError
    from animesr.video import preflight

    monkeypatch.setattr(preflight, "encoder_pixel_formats", lambda codec: frozenset({"nv12", "p010le", "qsv"}))
    preflight.check_pixel_format(EncodeSettings(codec="hevc_qsv"))
    preflight.check_pixel_format(EncodeSettings(codec="hevc_qsv", pix_fmt="yuv420p10le"))
    with pytest.raises(UsageError, match="--pix-fmt yuv444p is not one that --codec hevc_qsv takes"):
        preflight.check_pixel_format(EncodeSettings(codec="hevc_qsv", pix_fmt="yuv444p"))
