"""Image files ↔ arrays, and the one antialiased bicubic resize used everywhere.

Arrays are H×W×C in RGB(A) order, uint8 or uint16, C in (1, 3, 4); grayscale is H×W×1.
"""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from animesr.atomic import replaced_on_success
from animesr.errors import InputError, OutputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")
WRITE_FORMATS = ("png", "jpg", "webp")

# A damaged file is reported once, by us; OpenCV's own decoder chatter on stderr is noise.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)


def read_image(path: str | Path) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    return decode_image(path.read_bytes(), path)


def decode_image(data: bytes, path: Path) -> np.ndarray:
    """The file content `data` of `path` (named in errors) -> H×W×C RGB(A) array."""
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) if data else None
    if decoded is None:
        decoded = _read_with_pillow(data, path)
    return _upright(_to_rgb_layout(decoded, path), _exif_orientation(data))


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


def _exif_orientation(data: bytes) -> int:
    """Camera and phone pictures store pixels sideways with a tag saying how to turn them;
    neither OpenCV (unchanged mode) nor Pillow's decoder applies it. 1 when absent."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            return int(img.getexif().get(0x0112, 1))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return 1


def _upright(image: np.ndarray, orientation: int) -> np.ndarray:
    turn = _UPRIGHT.get(orientation)
    return np.ascontiguousarray(turn(image)) if turn else image


def _read_with_pillow(data: bytes, path: Path) -> np.ndarray:
    """Fallback for what OpenCV cannot decode (GIF, some palette and CMYK files)."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV", "1", "LA", "I;16B"):
                img = img.convert("RGBA" if "transparency" in img.info or img.mode in ("PA", "LA") else "RGB")
            array = np.asarray(img)
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise InputError(f"{path}: not a readable image ({error})") from None
    if array.ndim == 3 and array.shape[2] in (3, 4):
        return array[..., [2, 1, 0, 3][: array.shape[2]]]  # back to OpenCV's BGR(A)
    return array


def _to_rgb_layout(decoded: np.ndarray, path: Path) -> np.ndarray:
    if decoded.dtype not in (np.uint8, np.uint16):
        if decoded.dtype == np.int32 and decoded.max(initial=0) < 65536:
            decoded = decoded.astype(np.uint16)
        else:
            raise InputError(f"{path}: unsupported pixel type {decoded.dtype}")
    if decoded.ndim == 2:
        return decoded[..., None]
    channels = decoded.shape[2]
    if channels == 1:
        return decoded
    if channels == 2:  # gray + alpha: keep as gray colour with alpha
        gray, alpha = decoded[..., :1], decoded[..., 1:]
        return np.concatenate([gray, gray, gray, alpha], axis=2)
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
    image = to_uint8(image)
    if image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    if image.shape[2] == 4:
        alpha = image[..., 3:].astype(np.float32) / 255.0
        blended = image[..., :3] * alpha + 255.0 * (1.0 - alpha)
        return (blended + 0.5).astype(np.uint8)
    return image


def encode_image(image: np.ndarray, fmt: str, quality: int = 95) -> bytes:
    fmt = fmt.lower().lstrip(".")
    if fmt == "jpeg":
        fmt = "jpg"
    if fmt not in WRITE_FORMATS:
        raise OutputError(f"cannot write format {fmt!r}; choose one of {', '.join(WRITE_FORMATS)}")
    if fmt == "jpg" and image.shape[2] == 4:  # JPEG has no alpha: show it as viewers do, on white
        image = to_rgb8(image)
    if fmt in ("jpg", "webp"):
        image = to_uint8(image)
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


def _to_bgr_layout(image: np.ndarray) -> np.ndarray:
    if image.shape[2] == 1:
        return image[..., 0]
    if image.shape[2] == 3:
        return np.ascontiguousarray(image[..., ::-1])
    return np.ascontiguousarray(image[..., [2, 1, 0, 3]])


def write_image(path: str | Path, image: np.ndarray, fmt: str | None = None) -> None:
    """Encode fully in memory, write to a temporary name beside `path`, then rename."""
    path = Path(path)
    payload = encode_image(image, fmt or path.suffix)
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


def list_images(paths: list[Path], recursive: bool) -> list[tuple[Path, Path]]:
    """Expand files and folders into (image file, path relative to its root folder)."""
    found: list[tuple[Path, Path]] = []
    for root in paths:
        if not root.exists():
            raise InputError(f"{root}: no such file or folder")
        if root.is_file():
            found.append((root, Path(root.name)))
            continue
        pattern = "**/*" if recursive else "*"
        files = sorted(p for p in root.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise InputError(f"{root}: no images found{'' if recursive else ' (try --recursive)'}")
        found.extend((p, p.relative_to(root)) for p in files)
    return found
