"""ffmpeg argument lists for each step of a video job: scan, decode, encode a chunk, mux, check.
Pure functions of frozen settings; nothing here runs a process. No torch."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from animesr.config import EncodeSettings, VideoJob
from animesr.errors import InputError
from animesr.video.ffmpeg import path_arg
from animesr.video.probe import VideoInfo
from animesr.video.streams import stream_tags

# swscale's names for the YUV matrices ffmpeg tags streams with
_SWSCALE_MATRIX = {"bt709": "bt709", "smpte170m": "smpte170m", "bt470bg": "bt470", "fcc": "fcc",
                   "smpte240m": "smpte240m", "bt2020nc": "bt2020", "bt2020c": "bt2020"}
_SWSCALE_FLAGS = "bicubic+accurate_rnd+full_chroma_int"
_CRF_CODECS = ("libx264", "libx265", "libsvtav1", "libvpx-vp9", "libaom-av1")
_SAR_TERMS = 65535  # H.264/HEVC/AV1 store the sample aspect ratio in 16-bit terms
# MP4/MOV: the index first, for streaming; Matroska/WebM: the source's default flags, none inferred
_CONTAINER_OPTIONS = {"mp4": ["-movflags", "+faststart"], "mov": ["-movflags", "+faststart"],
                      "matroska": ["-default_mode", "passthrough"], "webm": ["-default_mode", "passthrough"]}
_QUIET = ["-hide_banner", "-nostdin", "-nostats", "-loglevel", "error"]


def output_matrix(info: VideoInfo) -> str:
    """The matrix decode and encode both use: the source's when swscale knows it."""
    matrix = info.decode_matrix
    return matrix if matrix in _SWSCALE_MATRIX else ("bt709" if info.is_hd else "smpte170m")


def input_args(job: VideoJob) -> list[str]:
    args = []
    if job.start is not None:
        args += ["-ss", f"{job.start:.6f}"]
    if job.duration is not None:
        args += ["-t", f"{job.duration:.6f}"]
    return [*args, "-i", path_arg(job.input)]


def ivtc_filters(info: VideoInfo) -> str:
    """Inverse telecine: match each frame's fields with its neighbours' (undoing combing),
    deinterlace what fieldmatch could not mend (orphan fields), drop the repeated frame of each 5.
    The field order comes from the stream (frames' own flags mislead fieldmatch's `auto`);
    untagged NTSC is top field first."""
    order = "bff" if info.field_order in ("bb", "tb") else "tff"
    return f"fieldmatch=order={order}:combmatch=full,bwdif=mode=send_frame:deint=interlaced,decimate"


# idet marks each frame combed or not; bwdif then leaves the progressive ones untouched
DEINTERLACE_FILTERS = "idet,bwdif=mode=send_frame:deint=interlaced"


def timing_filters(info: VideoInfo, job: VideoJob) -> list[str]:
    """The filters that decide which frames exist: fields (IVTC or deinterlace), then a constant rate."""
    return [*field_filters(info, job), *rate_filters(job)]


def field_filters(info: VideoInfo, job: VideoJob) -> list[str]:
    if job.field_mode == "auto":
        raise ValueError("field_mode 'auto' is resolved to a mode before any command is built")
    return {"ivtc": [ivtc_filters(info)], "deinterlace": [DEINTERLACE_FILTERS]}.get(job.field_mode, [])


# decimate ends its stream where its last frame starts, and fps drops a frame that starts at the
# end: one clone of that frame, at its time, moves the end to where the frame ends
_DECIMATE_END = "tpad=stop=1:stop_mode=clone"


def rate_filters(job: VideoJob) -> list[str]:
    """--fps: a constant rate."""
    if not job.fps:
        return []
    return [*([_DECIMATE_END] if job.field_mode == "ivtc" else []), f"fps={job.fps}"]


def scan_args(info: VideoInfo, job: VideoJob, *, frames_only: bool = False) -> list[str]:
    """Decode once, write each frame's timestamps (framecrc of wrapped frames: no pixels copied).
    Unless `frames_only`: with --fps the frames before the rate conversion are listed too, as
    stream 1, for where the source's frames end; with IVTC alone, the decoded frames, to count what
    5 → 4 left out."""
    filters = timing_filters(info, job)
    if frames_only or not scan_lists_two_streams(job):
        return [*_QUIET, *input_args(job), "-map", f"0:{info.video_index}", *_vf(filters),
                *_frame_timing_out(), "-c:v", "wrapped_avframe", "-f", "framecrc", "-"]
    rate = rate_filters(job)
    before, after = (field_filters(info, job), rate) if rate else ([], filters)
    listed_after = "".join(f"{f}," for f in before)
    graph = f"[0:{info.video_index}]{listed_after}split[listed][rest];[rest]{','.join(after)}[kept]"
    return [*_QUIET, *input_args(job), "-filter_complex", graph, "-map", "[kept]", "-map", "[listed]",
            *_frame_timing_out(), "-c:v", "wrapped_avframe", "-f", "framecrc", "-"]


def scan_lists_two_streams(job: VideoJob) -> bool:
    return bool(job.fps) or job.field_mode == "ivtc"


def packet_scan_args(path: Path) -> list[str]:
    """Timestamps of the first video stream's packets, without decoding."""
    return [*_QUIET, "-i", path_arg(path), "-map", "0:v:0", "-c", "copy", "-f", "framecrc", "-"]


def decode_args(info: VideoInfo, job: VideoJob, first_frame: int) -> list[str]:
    """rgb24 frames from `first_frame` on (counted after the timing filters), to stdout."""
    to_rgb = (f"scale=in_color_matrix={_SWSCALE_MATRIX[output_matrix(info)]}:in_range={info.decode_range}"
              f":out_range=pc:flags={_SWSCALE_FLAGS},format=rgb24")
    filters = [*timing_filters(info, job), *([f"trim=start_frame={first_frame}"] if first_frame else []), to_rgb]
    return [*_QUIET, *input_args(job), "-map", f"0:{info.video_index}", *_vf(filters),
            *_frame_timing_out(), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]


def encode_args(info: VideoInfo, encode: EncodeSettings, *, width: int, height: int, sar: Fraction, rate: Fraction,
                time_base: Fraction, pts_expression: str, destination: Path) -> list[str]:
    """rgb24 frames on stdin -> one chunk in the final codec, with the source's timestamps; `sar`:
    the output's sample aspect ratio."""
    matrix = output_matrix(info)
    filters = [
        f"settb={time_base.numerator}/{time_base.denominator}",
        f"setpts='{pts_expression}'",
        f"scale=out_color_matrix={_SWSCALE_MATRIX[matrix]}:out_range={info.decode_range}"
        f":flags={_SWSCALE_FLAGS}",
        f"format={encode.pix_fmt}",
        _colour_params(info),
        # setsar rounds to terms of at most `max` (100 by default): 22707/22720 would become 1/1
        f"setsar={sar.numerator}/{sar.denominator}:max={_SAR_TERMS}",
    ]
    source = ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}",
              "-framerate", f"{rate.numerator}/{rate.denominator}", "-i", "-"]
    return [*_QUIET, "-y", *source, *_vf(filters), *_frame_timing_out(), "-c:v", encode.codec,
            *quality_args(encode), *colour_tags(info), "-f", "nut", path_arg(destination)]


def encoder_trial_args(info: VideoInfo | None, encode: EncodeSettings, *, width: int, height: int,
                       container: str, destination: Path) -> list[str]:
    """Two grey frames of the output's size through the job's encoder and settings into the job's
    container (whose muxer refuses some codecs only when it writes its header). Without `info`,
    the source's colour tags are left out."""
    source = ["-f", "lavfi", "-i", f"color=c=gray:size={width}x{height}:rate=25"]
    tags = colour_tags(info) if info is not None else []
    return [*_QUIET, "-y", *source, "-frames:v", "2", "-vf", f"format={encode.pix_fmt}", "-c:v", encode.codec,
            *quality_args(encode), *tags, *_CONTAINER_OPTIONS.get(container, []), "-f", container,
            path_arg(destination)]


# enough for a muxer to write its header and a few packets of each stream
STREAM_TRIAL_SECONDS = 0.1


def stream_trial_args(source: Path, stream_indexes: list[int], container: str, destination: Path) -> list[str]:
    """The first tenth of a second of each of these streams of `source`, copied into the job's
    container (whose muxer refuses some codecs only when it writes its header)."""
    return [*_QUIET, "-y", "-t", f"{STREAM_TRIAL_SECONDS}", "-i", path_arg(source), *map_args(stream_indexes),
            "-c", "copy", *_CONTAINER_OPTIONS.get(container, []), "-f", container, path_arg(destination)]


def quality_args(encode: EncodeSettings) -> list[str]:
    """--crf as each encoder's constant-quality mode (hardware encoders have their own names)."""
    mode = _quality_mode(encode.codec)
    args = mode.args(encode.crf) if mode and encode.crf is not None else []
    if encode.preset is not None:
        args += ["-preset", encode.preset]
    return args


def has_quality_setting(codec: str) -> bool:
    """Whether --crf means something to `codec` (ffv1 and rawvideo, for instance, are lossless)."""
    return _quality_mode(codec) is not None


def check_quality(encode: EncodeSettings) -> None:
    """--crf inside the range of the encoder's constant-quality setting."""
    mode = _quality_mode(encode.codec)
    if encode.crf is not None and mode and not mode.low <= encode.crf <= mode.high:
        raise InputError(f"--crf {encode.crf} is out of range for {encode.codec}: use {mode.low} to {mode.high}")


@dataclass(frozen=True)
class _QualityMode:
    """An encoder's constant-quality setting: the range --crf must fall in, and its arguments."""

    low: int
    high: int
    args: Callable[[int], list[str]]


def _quality_mode(codec: str) -> _QualityMode | None:
    if codec in _CRF_CODECS:
        bitrate = ["-b:v", "0"] if codec in ("libvpx-vp9", "libaom-av1") else []
        high = 51 if codec in ("libx264", "libx265") else 63
        return _QualityMode(0, high, lambda crf: ["-crf", str(crf), *bitrate])
    if codec.endswith("_nvenc"):  # -cq 0 means "automatic", so the range starts at 1
        return _QualityMode(1, 51, lambda crf: ["-rc", "vbr", "-cq", str(crf), "-b:v", "0"])
    if codec.endswith("_qsv"):
        return _QualityMode(1, 51, lambda crf: ["-global_quality", str(crf)])
    if codec.endswith("_amf"):
        return _amf_quality_mode(codec)
    return None


def _amf_quality_mode(codec: str) -> _QualityMode:
    av1 = codec.startswith("av1")
    frames = "ip" if codec.startswith("hevc") else "ipb"  # HEVC AMF has no B-frame QP

    def args(crf: int) -> list[str]:
        qp = str(crf * 4 if av1 else crf)  # AV1 AMF counts 0..255, like AV1's q-index
        return ["-rc", "cqp", *(arg for f in frames for arg in (f"-qp_{f}", qp))]

    return _QualityMode(0, 63 if av1 else 51, args)


def _colour_params(info: VideoInfo) -> str:
    # frames carry their colour tags to the encoder; the output options alone are overridden
    params = f"setparams=colorspace={output_matrix(info)}:range={info.decode_range}"
    if info.color_primaries:
        params += f":color_primaries={info.color_primaries}"
    if info.color_transfer:
        params += f":color_trc={info.color_transfer}"
    return params


def colour_tags(info: VideoInfo) -> list[str]:
    tags = ["-colorspace", output_matrix(info), "-color_range", info.decode_range]
    if info.color_primaries:
        tags += ["-color_primaries", info.color_primaries]
    if info.color_transfer:
        tags += ["-color_trc", info.color_transfer]
    return tags


def mux_args(info: VideoInfo, job: VideoJob, *, concat_list: Path, video_offset: float, window_end: float,
             stream_args: list[str], container: str, destination: Path) -> list[str]:
    """The chunks (concatenated) + every kept stream, chapter and tag of the source, all cut to the
    video's window: `-t` ends every stream and clips the chapters (ffmpeg shifts them by --start)."""
    chunks = ["-itsoffset", f"{video_offset:.6f}", "-f", "concat", "-safe", "0", "-i", path_arg(concat_list)]
    container_options = _CONTAINER_OPTIONS.get(container, [])
    return [*_QUIET, "-y", *chunks, *input_args(job), "-map", "0:v:0", *stream_args,
            "-map_chapters", "1", "-map_metadata", "1", *_video_tags(info),
            "-c:v", "copy", "-t", f"{window_end:.6f}", *container_options, "-f", container, path_arg(destination)]


def decoded_audio_args(inputs: list[str], stream_indexes: list[int]) -> list[str]:
    """These audio streams of input 0 decoded: one framecrc line (time, samples) per decoded block."""
    return [*_QUIET, *inputs, *map_args(stream_indexes), "-c:a", "pcm_s16le", "-f", "framecrc", "-"]


def map_args(stream_indexes: list[int]) -> list[str]:
    """`-map 0:N` for each of these streams of input 0, in this order."""
    return [arg for index in stream_indexes for arg in ("-map", f"0:{index}")]


def _video_tags(info: VideoInfo) -> list[str]:
    # per-stream -map_metadata would stop ffmpeg copying the other streams' tags: set these
    video = next(s for s in info.streams if s.index == info.video_index)
    tags = ["-metadata:s:v:0", f"language={video.language}"] if video.language else []
    return [*tags, *stream_tags(video, 0)]


def _vf(filters: list[str]) -> list[str]:
    return ["-vf", ",".join(filters)] if filters else []


def _frame_timing_out() -> list[str]:
    # every frame once, with its own timestamp, in the time base the filters leave it in
    return ["-fps_mode", "passthrough", "-enc_time_base:v", "filter"]
