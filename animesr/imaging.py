"""Image files ↔ arrays, and the one antialiased bicubic resize used everywhere.

Arrays are H×W×C in RGB(A) order, uint8 or uint16: C = 1 grey, 2 grey + alpha, 3 RGB, 4 RGBA.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from animesr import icc
from animesr.atomic import replaced_on_success
from animesr.config import DEFAULT_MAX_PIXELS
from animesr.errors import ImageTooLargeError, InputError, OutputError
from animesr.inputs import folder_inside, list_inputs

# The suffixes of the files read_image decodes (OpenCV, else Pillow) into 8- or 16-bit pixels: what a
# folder walk takes, and all it takes. Left out, as read_image refuses them: float pictures (.pfm .hdr
# .exr), and what needs a program outside Python (.eps .ps: Ghostscript). tests/test_imaging.py holds
# the list and the reader to each other.
IMAGE_SUFFIXES = frozenset({
    ".png", ".apng", ".jpg", ".jpeg", ".jpe", ".jfif", ".webp", ".avif", ".avifs", ".gif", ".bmp", ".dib",
    ".tif", ".tiff", ".jp2", ".j2k", ".j2c", ".jpc", ".jpf", ".jpx", ".tga", ".icb", ".vda", ".vst", ".qoi",
    ".pbm", ".pgm", ".ppm", ".pnm", ".pcx", ".sgi", ".rgb", ".rgba", ".bw", ".ras", ".sr", ".ico", ".icns",
    ".dds", ".blp", ".im", ".msp", ".xbm",
})
WRITE_FORMATS = ("png", "jpg", "webp")

# A damaged file is reported once, by us; OpenCV's own decoder chatter on stderr is noise.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
# Our own limit (max_pixels) is checked before any decoding; Pillow's would refuse headers
# and EXIF of pictures the user allowed, and warn on the console about the others.
Image.MAX_IMAGE_PIXELS = None

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_GREY_ALPHA = 4  # IHDR colour type


@dataclass(frozen=True)
class _Header:
    width: int
    height: int
    grey_alpha: bool  # OpenCV decodes grey + alpha as BGRA: turn it back into 2 channels
    orientation: int  # EXIF orientation, 1 when absent
    frames: int  # more than 1: an animated GIF, WebP or PNG
    icc_profile: bytes | None  # the embedded ICC colour profile, None when there is none


def read_image(path: str | Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    path = Path(path)
    return decode_image(_file_bytes(path), path, max_pixels)


def read_image_and_profile(path: str | Path, max_pixels: int | None = DEFAULT_MAX_PIXELS
                           ) -> tuple[np.ndarray, bytes | None]:
    """read_image, and the ICC colour profile the file embeds when it describes the decoded pixels
    (grey or RGB; not, say, the CMYK profile of a CMYK JPEG decoded to RGB); else None."""
    path = Path(path)
    image, header = _decode(_file_bytes(path), path, max_pixels)
    profile = header.icc_profile if header else None
    return image, profile if profile and icc.describes(profile, grey=image.shape[2] in (1, 2)) else None


def _file_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    return path.read_bytes()


def decode_image(data: bytes, path: Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """The file content `data` of `path` (named in errors) -> H×W×C RGB(A) array.

    More than `max_pixels` pixels (None: no limit) is an ImageTooLargeError, raised from
    the header's size before anything is decoded when Pillow can read the header."""
    return _decode(data, path, max_pixels)[0]


def _decode(data: bytes, path: Path, max_pixels: int | None) -> tuple[np.ndarray, _Header | None]:
    """decode_image, and the header Pillow read (None when it could not)."""
    if not data:
        raise InputError(f"{path}: an empty file")
    header = _read_header(data)
    if header is not None:
        _check_pixels(header.width, header.height, max_pixels, path)
        if header.frames > 1:
            raise InputError(f"{path}: an animated image ({header.frames} frames); upscale-image would keep "
                             "one; upscale-video takes it whole")
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if decoded is None:
        decoded = _read_with_pillow(data, path)
    _check_pixels(decoded.shape[1], decoded.shape[0], max_pixels, path)  # a header Pillow could not read
    grey_alpha = header is not None and header.grey_alpha
    return _upright(_to_rgb_layout(decoded, path, grey_alpha), header.orientation if header else 1), header


def _check_pixels(width: int, height: int, max_pixels: int | None, path: Path) -> None:
    if max_pixels is not None and width * height > max_pixels:
        raise ImageTooLargeError(f"{path}: {width}×{height} is {width * height:,} pixels, "
                                 f"over the limit of {max_pixels:,}")


@contextmanager
def _quiet_pillow() -> Iterator[None]:
    """Pillow warns on stderr (decompression bombs, odd EXIF, palette transparency); what
    matters is reported once, by us, as the file's error."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _read_header(data: bytes) -> _Header | None:
    """Size, grey + alpha, EXIF orientation and ICC profile without decoding pixels; None when
    Pillow cannot tell (OpenCV may still decode the file)."""
    try:
        with _quiet_pillow(), Image.open(io.BytesIO(data)) as img:
            width, height = img.size
            grey_alpha = img.mode in ("LA", "La") or _is_grey_alpha_png(data)
            return _Header(width, height, grey_alpha, _exif_orientation(img), getattr(img, "n_frames", 1),
                           img.info.get("icc_profile") or None)
    except Exception:  # noqa: BLE001 - any header Pillow cannot parse: OpenCV decides, the size is checked after
        return None


def _is_grey_alpha_png(data: bytes) -> bool:
    # Pillow opens 16-bit grey + alpha as 8-bit RGBA, so the PNG header is asked directly
    return data[:8] == _PNG_SIGNATURE and data[12:16] == b"IHDR" and data[25:26] == bytes([_PNG_GREY_ALPHA])


# EXIF orientation tag -> how to turn the stored H×W×C pixels upright, as viewers show them.
_UPRIGHT = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: np.rot90(a, 2).transpose(1, 0, 2),
    8: lambda a: np.rot90(a, 1),
}


def _exif_orientation(img: Image.Image) -> int:
    """Camera and phone pictures store pixels sideways with a tag saying how to turn them;
    neither OpenCV (unchanged mode) nor Pillow's decoder applies it. 1 when absent."""
    try:
        return int(img.getexif().get(0x0112, 1))
    except Exception:  # noqa: BLE001 - damaged EXIF says nothing about orientation
        return 1


def _upright(image: np.ndarray, orientation: int) -> np.ndarray:
    turn = _UPRIGHT.get(orientation)
    return np.ascontiguousarray(turn(image)) if turn else image


def _read_with_pillow(data: bytes, path: Path) -> np.ndarray:
    """Fallback for what OpenCV cannot decode (GIF, some palette and CMYK files)."""
    try:
        with _quiet_pillow(), Image.open(io.BytesIO(data)) as img:
            if img.mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV", "1", "La", "I;16B"):
                img = img.convert("RGBA" if "transparency" in img.info or img.mode in ("PA", "La") else "RGB")
            array = np.asarray(img)  # LA stays two channels: grey + alpha
    except UnidentifiedImageError:
        raise InputError(f"{path}: not an image, or a format neither OpenCV nor Pillow reads") from None
    except (OSError, ValueError, SyntaxError, EOFError, struct.error) as error:
        raise InputError(f"{path}: not a readable image ({error})") from None
    if array.ndim == 3 and array.shape[2] in (3, 4):
        return array[..., [2, 1, 0, 3][: array.shape[2]]]  # back to OpenCV's BGR(A)
    return array


def _to_rgb_layout(decoded: np.ndarray, path: Path, grey_alpha: bool = False) -> np.ndarray:
    if decoded.dtype not in (np.uint8, np.uint16):
        if decoded.dtype == np.int32 and decoded.max(initial=0) < 65536:
            decoded = decoded.astype(np.uint16)
        else:
            raise InputError(f"{path}: unsupported pixel type {decoded.dtype}")
    if decoded.ndim == 2:
        return decoded[..., None]
    channels = decoded.shape[2]
    if channels in (1, 2):  # grey, grey + alpha
        return decoded
    if channels == 4 and grey_alpha:  # OpenCV's BGRA of a grey + alpha file, B = G = R
        return np.ascontiguousarray(decoded[..., [0, 3]])
    if channels == 3:
        return np.ascontiguousarray(decoded[..., ::-1])
    if channels == 4:
        return np.ascontiguousarray(decoded[..., [2, 1, 0, 3]])
    raise InputError(f"{path}: unsupported channel count {channels}")


def to_uint8(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint16:
        return (image.astype(np.float32) / 257.0 + 0.5).astype(np.uint8)
    return image


def to_rgb8(image: np.ndarray) -> np.ndarray:
    """Any H×W×C uint8/uint16 image -> H×W×3 uint8 (alpha composited on white, gray spread)."""
    image = on_white(to_uint8(image))
    return np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image


def on_white(image: np.ndarray) -> np.ndarray:
    """uint8 grey + alpha -> grey, RGBA -> RGB, composited on white as viewers show them;
    images without alpha are returned as they are."""
    if image.shape[2] not in (2, 4):
        return image
    alpha = image[..., -1:].astype(np.float32) / 255.0
    blended = image[..., :-1] * alpha + 255.0 * (1.0 - alpha)
    return (blended + 0.5).astype(np.uint8)


def check_image(image: np.ndarray) -> None:
    """The pictures animesr reads and writes: H×W×C uint8 or uint16 arrays of 1 to 4 channels."""
    if not isinstance(image, np.ndarray):
        raise InputError(f"images must be numpy arrays, not {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] not in (1, 2, 3, 4):
        raise InputError(f"images must be H×W×C with 1, 2, 3 or 4 channels, not shape {image.shape}")
    if image.dtype not in (np.uint8, np.uint16):
        raise InputError(f"images must be uint8 or uint16, not {image.dtype} (scale floats to 0..255 first)")
    if image.size == 0:
        raise InputError(f"an empty image ({image.shape[1]}×{image.shape[0]})")


def encode_image(image: np.ndarray, fmt: str, quality: int = 95, icc_profile: bytes | None = None) -> bytes:
    """The file content of `image` in `fmt`, with `icc_profile` in it when the profile is one for the
    pixels as stored (see keeps_profile)."""
    check_image(image)
    fmt = fmt.lower().lstrip(".")
    if fmt == "jpeg":
        fmt = "jpg"
    if fmt not in WRITE_FORMATS:
        raise OutputError(f"cannot write format {fmt!r}; choose one of {', '.join(WRITE_FORMATS)}")
    payload = _encode(image, fmt, quality)
    if icc_profile and keeps_profile(image, fmt, icc_profile):
        height, width, channels = image.shape
        alpha = channels in (2, 4)
        payload = icc.embedded(payload, fmt, icc_profile, width=width, height=height, alpha=alpha)
    return payload


def keeps_profile(image: np.ndarray, fmt: str, icc_profile: bytes) -> bool:
    """Whether `fmt` stores `image` in the colour space (grey or RGB) that `icc_profile` is for: WebP
    stores grey as RGB, which a grey profile does not describe."""
    return icc.describes(icc_profile, grey=image.shape[2] in (1, 2) and fmt != "webp")


def _encode(image: np.ndarray, fmt: str, quality: int) -> bytes:
    if fmt in ("jpg", "webp"):
        image = to_uint8(image)
    if fmt == "jpg":  # JPEG has no alpha: show it as viewers do, on white
        image = on_white(image)
    if image.shape[2] == 2:
        if fmt == "png":  # OpenCV writes 1, 3 or 4 channels only
            return _grey_alpha_png(image)
        image = np.concatenate([np.repeat(image[..., :1], 3, axis=2), image[..., 1:]], axis=2)  # WebP: RGBA
    bgr = _to_bgr_layout(image)
    params = {
        "jpg": [cv2.IMWRITE_JPEG_QUALITY, quality],
        "webp": [cv2.IMWRITE_WEBP_QUALITY, quality],
        "png": [cv2.IMWRITE_PNG_COMPRESSION, 3],
    }[fmt]
    ok, buffer = cv2.imencode("." + fmt, bgr, params)
    if not ok:
        raise OutputError(f"could not encode a {image.shape} {image.dtype} image as {fmt}")
    return buffer.tobytes()


def _grey_alpha_png(image: np.ndarray) -> bytes:
    """A grey + alpha PNG (colour type 4) of 8 or 16 bits, each row with the "up" filter."""
    height, width = image.shape[:2]
    depth = image.dtype.itemsize * 8
    rows = image.astype(">u2" if depth == 16 else np.uint8).reshape(height, -1).view(np.uint8)
    filtered = np.diff(rows, axis=0, prepend=np.zeros((1, rows.shape[1]), np.uint8))  # mod 256
    scanlines = np.concatenate([np.full((height, 1), 2, np.uint8), filtered], axis=1)  # 2: up

    ihdr = struct.pack(">IIBBBBB", width, height, depth, _PNG_GREY_ALPHA, 0, 0, 0)
    idat = zlib.compress(scanlines.tobytes(), 6)
    chunks = [icc.png_chunk(b"IHDR", ihdr), icc.png_chunk(b"IDAT", idat), icc.png_chunk(b"IEND", b"")]
    return _PNG_SIGNATURE + b"".join(chunks)


def _to_bgr_layout(image: np.ndarray) -> np.ndarray:
    if image.shape[2] == 1:
        return image[..., 0]
    if image.shape[2] == 3:
        return np.ascontiguousarray(image[..., ::-1])
    return np.ascontiguousarray(image[..., [2, 1, 0, 3]])


def write_image(path: str | Path, image: np.ndarray, fmt: str | None = None,
                icc_profile: bytes | None = None) -> None:
    """Encode fully in memory (with `icc_profile`, as encode_image), write to a temporary name beside
    `path`, then rename."""
    path = Path(path)
    payload = encode_image(image, fmt or path.suffix, icc_profile=icc_profile)
    write_bytes_atomically(path, payload)


def write_bytes_atomically(path: Path, payload: bytes) -> None:
    try:
        with replaced_on_success(path) as temporary:
            temporary.write_bytes(payload)
    except OSError as error:
        raise OutputError(f"cannot write {path}: {error.strerror or error}") from None


def bicubic_resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Pillow's antialiased bicubic (the A2N parity protocol's LR), any dtype, H×W×C.

    uint8 images take Pillow's 8-bit path exactly (rounded as Pillow rounds); other
    dtypes are resized per channel in float32 and returned as float32.
    """
    if image.dtype == np.uint8 and image.shape[2] in (1, 3):
        mode = "L" if image.shape[2] == 1 else "RGB"
        src = Image.fromarray(image[..., 0] if mode == "L" else image, mode)
        out = np.asarray(src.resize((width, height), Image.BICUBIC))
        return out[..., None] if mode == "L" else out
    planes = [
        np.asarray(Image.fromarray(image[..., c].astype(np.float32), "F").resize((width, height), Image.BICUBIC))
        for c in range(image.shape[2])
    ]
    return np.stack(planes, axis=2)


def downscale(image: np.ndarray, scale: int) -> np.ndarray:
    """The LR of an HR image whose sides are multiples of `scale`."""
    h, w = image.shape[:2]
    return bicubic_resize(image, w // scale, h // scale)


def crop_to_multiple(image: np.ndarray, scale: int) -> np.ndarray:
    h, w = image.shape[:2]
    return image[: h - h % scale, : w - w % scale]


def list_images(paths: list[Path], recursive: bool, skip: Path | None = None) -> list[tuple[Path, Path]]:
    """Expand files and folders into (image file, path relative to its root folder).

    Files under `skip` (the output folder) inside a folder are left out, so a recursive
    run never upscales the outputs of an earlier one.
    """
    def wanted(path: Path, root: Path) -> bool:
        inner = folder_inside(skip, root)
        return path.suffix.lower() in IMAGE_SUFFIXES and not (inner and path.resolve().is_relative_to(inner))

    return list_inputs(paths, recursive, wanted, "images")
