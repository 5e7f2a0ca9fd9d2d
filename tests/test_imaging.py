"""Image files ↔ arrays: bit depths, channel layouts, converted modes, corrupt files, atomic writes."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from animesr import atomic
from animesr import imaging
from animesr.errors import ImageTooLargeError, InputError, OutputError
from animesr.imaging import (IMAGE_SUFFIXES, decode_image, encode_image, list_images, read_image,
                             read_image_and_profile, write_image)
from conftest import smooth_image


@pytest.mark.parametrize(("channels", "dtype", "fmt"), [
    (3, np.uint8, "png"), (4, np.uint8, "png"), (1, np.uint8, "png"),
    (3, np.uint16, "png"), (1, np.uint16, "png"), (4, np.uint16, "png"),
    (2, np.uint8, "png"), (2, np.uint16, "png"),
    (3, np.uint8, "webp"),
])
def test_lossless_round_trip(tmp_path: Path, channels: int, dtype, fmt: str) -> None:
    image = smooth_image(21, 34, channels=channels, dtype=dtype)
    path = tmp_path / f"img.{fmt}"
    if fmt == "webp":
        path.write_bytes(encode_image(image, fmt, quality=101))  # > 100: lossless WebP
    else:
        write_image(path, image)
    back = read_image(path)
    assert back.dtype == dtype and back.shape == image.shape
    np.testing.assert_array_equal(back, image)


def test_sixteen_bit_png_written_by_pillow_reads_as_uint16(tmp_path: Path) -> None:
    image = smooth_image(10, 12, channels=1, dtype=np.uint16)
    Image.fromarray(image[..., 0]).save(tmp_path / "g16.png")  # mode I;16
    back = read_image(tmp_path / "g16.png")
    assert back.dtype == np.uint16 and back.shape == (10, 12, 1)
    np.testing.assert_array_equal(back, image)


def test_jpeg_round_trip_is_close(tmp_path: Path) -> None:
    image = smooth_image(32, 32)
    write_image(tmp_path / "a.jpg", image)
    back = read_image(tmp_path / "a.jpg")
    assert back.shape == image.shape and back.dtype == np.uint8
    assert np.abs(back.astype(int) - image.astype(int)).mean() < 4


def test_rgb_order_is_rgb(tmp_path: Path) -> None:
    red = np.zeros((4, 4, 3), np.uint8)
    red[..., 0] = 255
    Image.fromarray(red).save(tmp_path / "red.png")
    assert (read_image(tmp_path / "red.png")[..., 0] == 255).all()
    write_image(tmp_path / "red2.png", red)
    assert np.asarray(Image.open(tmp_path / "red2.png").convert("RGB"))[0, 0].tolist() == [255, 0, 0]


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_like_viewers_do(tmp_path: Path, orientation: int) -> None:
    from PIL import ImageOps

    stored = np.random.default_rng(orientation).integers(0, 256, (5, 8, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "photo.png"
    Image.fromarray(stored).save(path, exif=exif)
    with Image.open(path) as img:
        upright = np.asarray(ImageOps.exif_transpose(img).convert("RGB"))
    assert np.array_equal(read_image(path), upright)
    assert (upright.shape[:2] == (8, 5)) == (orientation >= 5)


def test_exif_orientation_of_a_jpeg(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: turn 90° clockwise
    path = tmp_path / "phone.jpg"
    stored = smooth_image(40, 64)
    Image.fromarray(stored).save(path, quality=98, exif=exif)
    image = read_image(path)
    assert image.shape == (64, 40, 3)
    assert np.abs(image.astype(int) - np.rot90(stored, -1)).mean() < 3


def test_palette_png_is_converted(tmp_path: Path) -> None:
    rgb = smooth_image(16, 16)
    palette = Image.fromarray(rgb).quantize(colors=16)
    palette.save(tmp_path / "p.png")
    back = read_image(tmp_path / "p.png")
    assert back.shape == (16, 16, 3) and back.dtype == np.uint8
    np.testing.assert_array_equal(back, np.asarray(palette.convert("RGB")))


def test_palette_png_with_transparency_keeps_alpha(tmp_path: Path) -> None:
    img = Image.new("P", (8, 8), 0)
    img.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    img.paste(1, (0, 0, 4, 8))
    img.info["transparency"] = 0
    img.save(tmp_path / "pt.png", transparency=0)
    back = read_image(tmp_path / "pt.png")
    assert back.shape == (8, 8, 4)
    assert (back[:, 4:, 3] == 0).all() and (back[:, :4, 3] == 255).all()
    assert back[0, 0, :3].tolist() == [0, 0, 255]


def test_gray_alpha_png_stays_gray_alpha(tmp_path: Path) -> None:
    pixels = np.stack([smooth_image(6, 6, 1)[..., 0], np.full((6, 6), 200, np.uint8)], axis=2)
    Image.fromarray(pixels, "LA").save(tmp_path / "la.png")
    back = read_image(tmp_path / "la.png")
    assert back.shape == (6, 6, 2) and back.dtype == np.uint8
    np.testing.assert_array_equal(back, pixels)


def test_sixteen_bit_gray_alpha_png_keeps_its_depth_and_layout(tmp_path: Path) -> None:
    image = np.concatenate([smooth_image(7, 9, 1, np.uint16, seed=1), smooth_image(7, 9, 1, np.uint16, seed=2)], axis=2)
    write_image(tmp_path / "la16.png", image)
    # another decoder sees a 16-bit grey + alpha file (OpenCV shows grey + alpha as BGRA)
    independent = cv2.imread(str(tmp_path / "la16.png"), cv2.IMREAD_UNCHANGED)
    assert independent.dtype == np.uint16 and independent.shape == (7, 9, 4)
    np.testing.assert_array_equal(independent[..., 0], image[..., 0])
    np.testing.assert_array_equal(independent[..., 2], image[..., 0])
    np.testing.assert_array_equal(independent[..., 3], image[..., 1])
    assert Image.open(tmp_path / "la16.png").getpixel((0, 0))[:1] == (image[0, 0, 0] >> 8,)
    back = read_image(tmp_path / "la16.png")
    assert back.dtype == np.uint16 and back.shape == (7, 9, 2)
    np.testing.assert_array_equal(back, image)


def test_gray_alpha_in_lossy_formats(tmp_path: Path) -> None:
    see_through = np.zeros((16, 16, 2), np.uint8)  # black, fully transparent
    shown = imaging.decode_image(encode_image(see_through, "jpg"), Path("t.jpg"))
    assert shown.shape == (16, 16, 1) and shown.min() >= 250  # grey, on white as viewers show it
    la = np.stack([smooth_image(16, 16, 1)[..., 0], np.full((16, 16), 90, np.uint8)], axis=2)
    webp = imaging.decode_image(encode_image(la, "webp", quality=101), Path("t.webp"))
    assert webp.shape == (16, 16, 4)  # WebP has no grey: RGBA with equal colours
    np.testing.assert_array_equal(webp[..., 3], la[..., 1])
    np.testing.assert_array_equal(webp[..., 0], la[..., 0])
    rgb = imaging.to_rgb8(la)  # what prepare and validation see: grey on white, spread to RGB
    assert rgb.shape == (16, 16, 3) and (rgb[..., 0] == rgb[..., 2]).all()
    assert rgb[0, 0, 0] == round(int(la[0, 0, 0]) * 90 / 255 + 255 * (1 - 90 / 255))


def test_cmyk_jpeg_is_converted_to_rgb(tmp_path: Path) -> None:
    rgb = smooth_image(24, 24)
    cmyk = Image.fromarray(rgb).convert("CMYK")
    cmyk.save(tmp_path / "cmyk.jpg", quality=98)
    back = read_image(tmp_path / "cmyk.jpg")
    assert back.shape == (24, 24, 3) and back.dtype == np.uint8
    expected = np.asarray(Image.open(tmp_path / "cmyk.jpg").convert("RGB"))
    assert np.abs(back.astype(int) - expected.astype(int)).mean() < 3
    assert np.abs(back.astype(int) - rgb.astype(int)).mean() < 6


def _profile(colour_space: bytes = b"RGB ") -> bytes:
    """Pillow's sRGB profile, its header's colour space changed when asked (Pillow makes no grey one)."""
    from PIL import ImageCms

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    return srgb[:16] + colour_space + srgb[20:]


def _profile_in(payload: bytes) -> bytes | None:
    with Image.open(io.BytesIO(payload)) as img:
        img.load()
        return img.info.get("icc_profile")


@pytest.mark.parametrize("fmt", ["png", "jpg", "webp"])
@pytest.mark.parametrize(("channels", "dtype"), [(3, np.uint8), (4, np.uint8), (3, np.uint16), (1, np.uint8),
                                                 (2, np.uint16)])
def test_an_icc_profile_is_embedded_and_the_pixels_stay_the_same(fmt: str, channels: int, dtype) -> None:
    image = smooth_image(9, 13, channels=channels, dtype=dtype)
    grey = channels in (1, 2)
    profile = _profile(b"GRAY" if grey else b"RGB ")
    plain, tagged = encode_image(image, fmt), encode_image(image, fmt, icc_profile=profile)
    kept = not (grey and fmt == "webp")  # WebP stores grey as RGB, which a grey profile does not describe
    assert _profile_in(tagged) == (profile if kept else None) and _profile_in(plain) is None
    np.testing.assert_array_equal(decode_image(tagged, Path("x")), decode_image(plain, Path("x")))


def test_the_icc_profile_of_a_picture_is_read_when_it_describes_its_pixels(tmp_path: Path) -> None:
    Image.fromarray(smooth_image(8, 8)).save(tmp_path / "p3.jpg", icc_profile=_profile())
    Image.fromarray(smooth_image(8, 8)).save(tmp_path / "plain.png")
    Image.fromarray(smooth_image(8, 8)).convert("CMYK").save(tmp_path / "cmyk.jpg", icc_profile=_profile(b"CMYK"))
    Image.fromarray(smooth_image(8, 8, channels=1)[..., 0]).save(tmp_path / "grey.png", icc_profile=_profile(b"GRAY"))
    assert read_image_and_profile(tmp_path / "p3.jpg")[1] == _profile()
    assert read_image_and_profile(tmp_path / "plain.png")[1] is None
    image, profile = read_image_and_profile(tmp_path / "cmyk.jpg")
    assert image.shape[2] == 3 and profile is None  # decoded to RGB: the CMYK profile would misdescribe it
    assert read_image_and_profile(tmp_path / "grey.png")[1] == _profile(b"GRAY")


@pytest.mark.parametrize("fault", [KeyError("odd tag"), ZeroDivisionError("odd size")])
def test_a_header_pillow_trips_on_is_decoded_without_a_profile(tmp_path: Path, monkeypatch, fault) -> None:
    """The profile was read in a second Pillow pass that let such faults through as a traceback."""
    image = smooth_image(8, 8)
    imaging.write_image(tmp_path / "a.png", image, icc_profile=_profile())
    opened: list[object] = []

    def tripping_open(*args, **kwargs):
        opened.append(args)
        raise fault

    monkeypatch.setattr(Image, "open", tripping_open)
    read, profile = read_image_and_profile(tmp_path / "a.png")
    assert np.array_equal(read, image) and profile is None
    assert len(opened) == 1  # header and profile: one Pillow pass


def test_gif_reads(tmp_path: Path) -> None:
    Image.fromarray(smooth_image(10, 10)).convert("P").save(tmp_path / "a.gif")
    assert read_image(tmp_path / "a.gif").shape[:2] == (10, 10)


@pytest.mark.parametrize("suffix", [".gif", ".webp", ".png"])
def test_an_animated_image_is_refused_not_cut_to_its_first_frame(tmp_path: Path, suffix: str) -> None:
    frames = [Image.fromarray(smooth_image(10, 10, seed=seed)) for seed in range(3)]
    path = tmp_path / f"anim{suffix}"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    with pytest.raises(InputError, match=r"animated image \(3 frames\)"):
        read_image(path)


@pytest.mark.parametrize(("content", "words"), [(b"", "an empty file"), (b"just some text", "not an image")])
def test_what_is_not_a_picture_is_named_plainly(tmp_path: Path, content: bytes, words: str) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(content)
    with pytest.raises(InputError) as raised:
        read_image(path)
    assert words in str(raised.value) and "BytesIO" not in str(raised.value) and str(path) in str(raised.value)


@pytest.mark.parametrize("payload", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\x00" * 50])
def test_corrupt_file_is_an_input_error(tmp_path: Path, payload: bytes) -> None:
    path = tmp_path / "broken.png"
    path.write_bytes(payload)
    with pytest.raises(InputError, match="broken.png"):
        read_image(path)


def test_truncated_png_is_an_input_error(tmp_path: Path) -> None:
    write_image(tmp_path / "full.png", smooth_image(64, 64))
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 3])
    with pytest.raises(InputError, match="cut.png"):
        read_image(tmp_path / "cut.png")


@pytest.fixture(scope="module")
def huge_png(tmp_path_factory) -> Path:
    """12000×12000 pixels in about 140 KB: 432 MB once decoded as RGB, far more once upscaled."""
    path = tmp_path_factory.mktemp("huge") / "huge.png"
    Image.new("1", (12000, 12000)).save(path)
    assert path.stat().st_size < 200_000
    return path


def test_too_many_pixels_is_refused_from_the_header(huge_png: Path, monkeypatch) -> None:
    monkeypatch.setattr(imaging.cv2, "imdecode", lambda *a: pytest.fail("the image was decoded"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ImageTooLargeError, match="huge.png: 12000×12000 is 144,000,000 pixels, "
                                                     "over the limit of 50,000,000"):
            read_image(huge_png)
    assert [str(w.message) for w in caught] == []  # Pillow's DecompressionBombWarning stays quiet


def test_the_pixel_limit_is_a_parameter(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png", smooth_image(10, 20))
    with pytest.raises(ImageTooLargeError, match="20×10 is 200 pixels, over the limit of 199"):
        read_image(tmp_path / "a.png", max_pixels=199)
    assert read_image(tmp_path / "a.png", max_pixels=200).shape == (10, 20, 3)
    assert read_image(tmp_path / "a.png", max_pixels=None).shape == (10, 20, 3)


def test_missing_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        read_image(tmp_path / "nope.png")


def test_encode_rules() -> None:
    rgba16 = smooth_image(8, 8, channels=4, dtype=np.uint16)
    jpg = encode_image(rgba16, "jpeg")  # 16-bit → 8-bit, alpha composited on white
    assert jpg[:2] == b"\xff\xd8"
    see_through = np.zeros((16, 16, 4), np.uint8)  # black, fully transparent
    shown = imaging.decode_image(encode_image(see_through, "jpg"), Path("t.jpg"))
    assert shown.shape == (16, 16, 3) and shown.min() >= 250  # white, as a viewer shows it
    with pytest.raises(OutputError, match="cannot write format"):
        encode_image(rgba16, "bmp")


def test_atomic_write_leaves_no_temporary_file_on_failure(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "out.png"
    old = smooth_image(8, 8, seed=1)
    write_image(target, old)

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "replace", broken_replace)
    with pytest.raises(OutputError, match="No space left"):
        write_image(target, smooth_image(8, 8, seed=2))
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]  # no temporary file
    np.testing.assert_array_equal(read_image(target), old)  # previous file intact


def test_write_into_a_missing_folder_is_an_output_error(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="cannot write"):
        write_image(tmp_path / "missing" / "out.png", smooth_image(4, 4))
    assert not (tmp_path / "missing").exists()


def test_write_does_not_expose_partial_files(tmp_path: Path, monkeypatch) -> None:
    # the payload is encoded fully before anything touches the disk: an encode failure writes nothing
    def broken_encode(image, fmt, quality=95, icc_profile=None):
        raise OutputError("encode failed")

    monkeypatch.setattr(imaging, "encode_image", broken_encode)
    with pytest.raises(OutputError):
        write_image(tmp_path / "x.png", smooth_image(4, 4))
    assert not os.listdir(tmp_path)


def test_list_images(tmp_path: Path) -> None:
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    for rel in ("b.png", "a.JPG", "notes.txt", "sub/c.webp", "sub/deeper/d.bmp"):
        (tmp_path / rel).write_bytes(b"x")
    flat = list_images([tmp_path], recursive=False)
    assert [rel.as_posix() for _, rel in flat] == ["a.JPG", "b.png"]
    deep = list_images([tmp_path], recursive=True)
    assert [rel.as_posix() for _, rel in deep] == ["a.JPG", "b.png", "sub/c.webp", "sub/deeper/d.bmp"]
    single = list_images([tmp_path / "sub" / "c.webp"], recursive=False)
    assert single == [(tmp_path / "sub" / "c.webp", Path("c.webp"))]


_NEEDS_GHOSTSCRIPT = {".eps", ".ps"}  # read only where Ghostscript is installed: never taken from a folder


def _write_sample(path: Path) -> bool:
    """A small picture in the format its suffix names, by Pillow or else OpenCV; False when neither writes it."""
    Image.init()
    fmt = Image.registered_extensions().get(path.suffix)
    if fmt in Image.SAVE:
        picture = Image.fromarray(smooth_image(16, 16))
        for mode in ("F",) if path.suffix == ".pfm" else ("RGB", "L", "1"):  # .pfm: Pillow writes floats as PFM
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)  # Pillow 12 deprecates IM
                    picture.convert(mode).save(path, format=fmt)
                return True
            except (OSError, ValueError, KeyError):  # this mode is not one the format holds
                path.unlink(missing_ok=True)
        return False
    try:
        return bool(cv2.imwrite(str(path), smooth_image(16, 16)))
    except cv2.error:  # no OpenCV encoder for the suffix
        return False


def _reads(path: Path) -> bool:
    try:
        read_image(path)
    except InputError:
        return False
    return True


def test_a_folder_walk_takes_every_suffix_the_reader_reads_and_no_other(tmp_path: Path) -> None:
    """`.jfif` and `.avif` pictures were upscaled when named, and left out of a folder in silence."""
    Image.init()
    pillow_writes = {suffix for suffix, fmt in Image.registered_extensions().items()
                     if fmt in Image.SAVE and fmt in Image.OPEN}
    candidates = (pillow_writes | IMAGE_SUFFIXES | {".hdr", ".pfm", ".exr"}) - _NEEDS_GHOSTSCRIPT
    written = {suffix for suffix in candidates if _write_sample(tmp_path / f"x{suffix}")}
    assert {".jfif", ".jpe", ".jp2", ".tga", ".qoi", ".sr", ".hdr", ".pfm"} <= written
    assert {suffix for suffix in written if _reads(tmp_path / f"x{suffix}")} == IMAGE_SUFFIXES & written
    assert {path.suffix for path, _ in list_images([tmp_path], recursive=False)} == IMAGE_SUFFIXES & written
    assert not IMAGE_SUFFIXES & _NEEDS_GHOSTSCRIPT


def test_jfif_and_avif_pictures_in_a_folder_are_taken(tmp_path: Path) -> None:
    for name in ("A.JPG", "b.jfif", "c.avif"):
        if not _write_sample(tmp_path / name.lower()):
            pytest.skip(f"neither Pillow nor OpenCV writes {Path(name).suffix} here")
    (tmp_path / "a.jpg").rename(tmp_path / "A.JPG")
    found = [rel.as_posix() for _, rel in list_images([tmp_path], recursive=False)]
    assert found == ["A.JPG", "b.jfif", "c.avif"]
    assert all(read_image(tmp_path / name).shape == (16, 16, 3) for name in found)


def test_list_images_skips_the_output_folder_inside_an_input_folder(tmp_path: Path) -> None:
    (tmp_path / "up" / "sub").mkdir(parents=True)
    for rel in ("a.png", "up/a_x2.png", "up/sub/b.png", "upper.png"):
        (tmp_path / rel).write_bytes(b"x")
    deep = list_images([tmp_path], recursive=True, skip=tmp_path / "up")
    assert [rel.as_posix() for _, rel in deep] == ["a.png", "upper.png"]
    assert len(list_images([tmp_path], recursive=True, skip=tmp_path / "up" / ".." / "up")) == 2
    # the output folder *is* the input folder (outputs told apart by --suffix): nothing to skip
    assert len(list_images([tmp_path], recursive=True, skip=tmp_path)) == 4
    assert len(list_images([tmp_path / "up"], recursive=True, skip=tmp_path)) == 2  # output outside


def test_list_images_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file or folder"):
        list_images([tmp_path / "missing"], recursive=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images found"):
        list_images([tmp_path / "empty"], recursive=True)


@pytest.mark.parametrize("image", [
    np.zeros((4, 4, 3), np.float32), np.zeros((4, 4, 3), bool), np.zeros((4, 4, 3), np.int32),
    np.zeros((4, 4, 5), np.uint8), np.zeros((4, 4), np.uint8), np.zeros((0, 4, 3), np.uint8), [[0, 0]],
], ids=["float", "bool", "int32", "5 channels", "H×W", "empty", "list"])
def test_write_image_refuses_what_it_would_write_wrongly(tmp_path: Path, image) -> None:
    """A float image in 0..1 was written as a black PNG, H×W×5 as RGBA; H×W was an IndexError."""
    with pytest.raises(InputError, match="images must|empty image"):
        write_image(tmp_path / "x.png", image)
    assert not (tmp_path / "x.png").exists()


def test_the_upscaler_refuses_empty_images_and_frames() -> None:
    from animesr import Upscaler
    from animesr.config import InferenceSettings
    from conftest import tiny_loaded

    upscaler = Upscaler(tiny_loaded(2), InferenceSettings(device="cpu", backend="torch"))
    with pytest.raises(InputError, match="empty image"):
        upscaler.upscale(np.zeros((0, 5, 3), np.uint8))
    with pytest.raises(InputError, match="non-empty"):
        upscaler.upscale_frames(np.zeros((1, 0, 0, 3), np.uint8))
    with pytest.raises(InputError, match="numpy arrays"):
        upscaler.upscale([[1, 2, 3]])
