"""Tests for labeling.data.images, .scan and .thumbnails: probing, loading, thumbnails, folder scans."""
from __future__ import annotations

import hashlib
import io
import os
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from labeling.data.images import MAX_PIXELS, ImageError, ProbeResult, load_rgb, probe_image
from labeling.data.scan import IMAGE_EXTENSIONS, relative_uri, scan_folder
from labeling.data.thumbnails import make_thumbnail

RED = (255, 0, 0)
BLUE = (0, 0, 255)
WHITE = (255, 255, 255)


# --------------------------------------------------------------------------- helpers


def _save(path: Path, im: Image.Image, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, **kwargs)
    return path


def _noise(size: tuple[int, int], seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")


def _png_with_size(width: int, height: int) -> bytes:
    """A real PNG whose IHDR claims ``width x height`` (CRC fixed), with 1 pixel of data."""
    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def _close(a, b, tol: int = 3) -> bool:
    return all(abs(int(x) - int(y)) <= tol for x, y in zip(a, b))


def _oriented_jpeg(path: Path, orientation: int = 6) -> Path:
    """40x20 JPEG, left half red and right half blue, with an EXIF orientation tag."""
    im = Image.new("RGB", (40, 20), BLUE)
    im.paste(RED, (0, 0, 20, 20))
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _save(path, im, format="JPEG", quality=95, exif=exif)


# --------------------------------------------------------------------------- probe_image


def test_probe_good_png_reports_size_and_hash(tmp_path):
    path = _save(tmp_path / "ok.png", Image.new("RGB", (30, 20), RED))
    result = probe_image(path)
    assert result == ProbeResult(True, 30, 20, hashlib.sha256(path.read_bytes()).hexdigest(), None)


def test_probe_accepts_one_pixel_image(tmp_path):
    path = _save(tmp_path / "dot.png", Image.new("RGB", (1, 1), RED))
    result = probe_image(path)
    assert result.ok and (result.width, result.height) == (1, 1) and result.reason is None
    assert load_rgb(path).getpixel((0, 0)) == RED


def _truncated(kind: str):
    def make(path: Path) -> None:
        buf = io.BytesIO()
        _noise((64, 64)).save(buf, kind)
        data = buf.getvalue()
        path.write_bytes(data[: len(data) // 2])

    return make


@pytest.mark.parametrize(
    ("name", "make", "reason"),
    [
        ("empty.jpg", lambda p: p.write_bytes(b""), "empty file"),
        ("noise.jpg", lambda p: p.write_bytes(np.random.default_rng(1).bytes(4096)), "not an image"),
        ("notes.png", lambda p: p.write_text("hello, I am not a picture\n"), "not an image"),
        ("cut.png", _truncated("PNG"), "truncated or corrupt image data"),
        ("cut.jpg", _truncated("JPEG"), "truncated or corrupt image data"),
    ],
)
def test_probe_rejects_bad_files_with_reason(tmp_path, name, make, reason):
    path = tmp_path / name
    make(path)
    result = probe_image(path)
    assert not result.ok
    assert result.reason.startswith(reason)
    assert "\n" not in result.reason
    assert result.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert result.width is None and result.height is None
    with pytest.raises(ImageError, match=reason) as info:
        load_rgb(path)
    assert info.value.path == path and isinstance(info.value, ValueError)


def test_probe_checks_png_checksums(tmp_path):
    buf = io.BytesIO()
    _noise((16, 16)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    start = data.index(b"IDAT") - 4
    (length,) = struct.unpack(">I", data[start : start + 4])
    crc_at = start + 8 + length
    data[crc_at : crc_at + 4] = bytes(b ^ 0xFF for b in data[crc_at : crc_at + 4])
    path = tmp_path / "badcrc.png"
    path.write_bytes(bytes(data))
    result = probe_image(path)
    assert not result.ok and result.reason.startswith("truncated or corrupt image data")


def test_probe_missing_file(tmp_path):
    result = probe_image(tmp_path / "nope.png")
    assert not result.ok and result.sha256 is None
    assert result.reason.startswith("cannot read file")


@pytest.mark.parametrize("side", [10_000, 20_000])  # above the limit; 20000 is above Pillow's error limit too
@pytest.mark.parametrize("pillow_limit", ["default", "disabled"])
@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_decompression_bomb_is_refused_before_decoding(tmp_path, monkeypatch, side, pillow_limit):
    if pillow_limit == "disabled":
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_with_size(side, side))
    assert side * side > MAX_PIXELS
    result = probe_image(path)
    assert not result.ok
    # A decode attempt would report truncated data instead: the header check came first.
    assert result.reason == f"image too large: {side}x{side} pixels exceeds limit of {MAX_PIXELS} pixels"
    with pytest.raises(ImageError, match="image too large"):
        load_rgb(path, max_side=64)


def test_image_just_under_the_limit_is_not_called_too_large(tmp_path):
    path = tmp_path / "big.png"
    path.write_bytes(_png_with_size(9000, 9000))  # 81M pixels: allowed, but the data is missing
    assert probe_image(path).reason.startswith("truncated or corrupt image data")


def test_probe_reports_upright_size_for_exif_rotation(tmp_path):
    path = _oriented_jpeg(tmp_path / "rot.jpg", orientation=6)
    result = probe_image(path)
    assert result.ok and (result.width, result.height) == (20, 40)


@given(seed=st.integers(0, 2**32 - 1), kind=st.sampled_from(["PNG", "JPEG", "GIF", "WEBP", "BMP"]))
@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_probe_never_raises_on_mangled_files(tmp_path, seed, kind):
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    _noise((24, 16), seed=1).save(buf, kind)
    data = bytearray(buf.getvalue())
    for i in rng.integers(0, len(data), size=int(rng.integers(1, 6))):
        data[i] = int(rng.integers(0, 256))
    data = data[: int(rng.integers(1, len(data) + 1))]
    path = tmp_path / f"fuzz.{kind.lower()}"
    path.write_bytes(bytes(data))
    result = probe_image(path)
    assert result.ok == (result.reason is None)
    if result.ok:
        assert load_rgb(path).mode == "RGB"
    else:
        with pytest.raises(ImageError):
            load_rgb(path)


# --------------------------------------------------------------------------- load_rgb


def test_load_cmyk_jpeg_as_rgb(tmp_path):
    path = _save(tmp_path / "cmyk.jpg", Image.new("CMYK", (16, 16), (0, 255, 255, 0)), quality=95)
    assert Image.open(path).mode == "CMYK"
    im = load_rgb(path)
    assert im.mode == "RGB" and _close(im.getpixel((8, 8)), RED, tol=8)


def test_load_16bit_png_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 1000, 32768, 65535]], dtype=np.uint16)
    path = _save(tmp_path / "deep.png", Image.fromarray(values))
    assert Image.open(path).mode.startswith("I;16")
    im = load_rgb(path)
    assert im.mode == "RGB"
    grey = [im.getpixel((x, 0))[0] for x in range(4)]
    assert grey == [0, 4, 128, 255]  # clipping would give 255 for everything above 255


def test_load_32bit_int_image_with_16bit_values(tmp_path):
    arr = np.array([[0, 32768, 65535]], dtype=np.int32)
    path = _save(tmp_path / "int.tif", Image.fromarray(arr, "I"))
    assert Image.open(path).mode == "I"
    assert [load_rgb(path).getpixel((x, 0))[0] for x in range(3)] == [0, 128, 255]


def test_load_palette_with_transparency_composites_on_white(tmp_path):
    im = Image.new("P", (4, 4), 0)
    im.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    im.paste(1, (2, 0, 4, 4))
    path = _save(tmp_path / "pal.png", im, transparency=0)
    out = load_rgb(path)
    assert out.getpixel((0, 0)) == WHITE  # index 0 is transparent black
    assert out.getpixel((3, 0)) == RED


@pytest.mark.parametrize(
    ("mode", "colour", "expected"),
    [
        ("RGBA", (255, 0, 0, 0), WHITE),
        ("RGBA", (255, 0, 0, 255), RED),
        ("RGBA", (0, 0, 0, 128), (127, 127, 127)),
        ("LA", (0, 0), WHITE),
        ("LA", (0, 255), (0, 0, 0)),
        ("L", 77, (77, 77, 77)),
        ("1", 1, WHITE),
    ],
)
def test_load_converts_modes_to_rgb(tmp_path, mode, colour, expected):
    path = _save(tmp_path / f"{mode}.png", Image.new(mode, (5, 5), colour))
    im = load_rgb(path)
    assert im.mode == "RGB" and _close(im.getpixel((2, 2)), expected, tol=1)


@pytest.mark.parametrize("ext", [".gif", ".webp"])
def test_load_animated_image_gives_first_frame(tmp_path, ext):
    frames = [Image.new("RGB", (10, 10), RED), Image.new("RGB", (10, 10), BLUE)]
    path = _save(tmp_path / f"anim{ext}", frames[0], save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert getattr(Image.open(path), "n_frames", 1) == 2
    assert _close(load_rgb(path).getpixel((5, 5)), RED, tol=4)
    assert probe_image(path).ok


def test_load_applies_exif_orientation(tmp_path):
    path = _oriented_jpeg(tmp_path / "rot.jpg", orientation=6)
    im = load_rgb(path)
    assert im.size == (20, 40)
    # Orientation 6 is displayed rotated 90 degrees clockwise: the stored left (red) half goes on top.
    assert _close(im.getpixel((10, 5)), RED, tol=40)
    assert _close(im.getpixel((10, 34)), BLUE, tol=40)


@pytest.mark.parametrize("ext", [".jpg", ".png"])
def test_load_max_side_downscales_keeping_aspect(tmp_path, ext):
    path = _save(tmp_path / f"wide{ext}", _noise((1000, 500)))
    assert load_rgb(path, max_side=100).size == (100, 50)
    assert load_rgb(path, max_side=5000).size == (1000, 500)  # never enlarged


def test_load_rejects_bad_max_side(tmp_path):
    path = _save(tmp_path / "a.png", Image.new("RGB", (4, 4)))
    with pytest.raises(ValueError, match="max_side"):
        load_rgb(path, max_side=0)


def test_image_error_is_picklable(tmp_path):
    err = ImageError(tmp_path / "x.png", "empty file")
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.path, copy.reason, str(copy)) == (err.path, err.reason, str(err))


# --------------------------------------------------------------------------- make_thumbnail


@pytest.mark.parametrize("max_side", [128, 512])
def test_thumbnail_of_noise_fits_in_budget(tmp_path, max_side):
    src = _save(tmp_path / "noise.jpg", _noise((2000, 2000)), quality=90)
    dst = make_thumbnail(src, tmp_path / "thumbs" / "noise.jpg", max_side=max_side)
    assert dst.stat().st_size <= 20_000
    with Image.open(dst) as im:
        assert im.format == "JPEG" and max(im.size) <= max_side
        if max_side == 128:
            assert im.size == (128, 128)
    assert [p.name for p in dst.parent.iterdir()] == ["noise.jpg"]  # no temporary files left


def test_thumbnail_is_upright(tmp_path):
    src = _oriented_jpeg(tmp_path / "rot.jpg", orientation=6)
    dst = make_thumbnail(src, tmp_path / "t.jpg", max_side=16)
    with Image.open(dst) as im:
        assert im.size == (8, 16)
        assert 0x0112 not in im.getexif()


def test_thumbnail_is_skipped_when_newer_and_redone_when_stale(tmp_path):
    src = _save(tmp_path / "a.png", Image.new("RGB", (50, 50), RED))
    dst = tmp_path / "a.thumb.jpg"
    dst.write_bytes(b"sentinel")
    old, new = 1_600_000_000, 1_700_000_000
    os.utime(src, (old, old))
    os.utime(dst, (new, new))
    assert make_thumbnail(src, dst) == dst
    assert dst.read_bytes() == b"sentinel"

    os.utime(src, (new + 10, new + 10))
    make_thumbnail(src, dst)
    with Image.open(dst) as im:
        assert im.format == "JPEG" and _close(im.getpixel((10, 10)), RED, tol=6)


def test_thumbnail_of_bad_file_raises_and_writes_nothing(tmp_path):
    src = tmp_path / "bad.jpg"
    src.write_text("not an image")
    with pytest.raises(ImageError, match="not an image"):
        make_thumbnail(src, tmp_path / "out" / "bad.jpg")
    assert not (tmp_path / "out" / "bad.jpg").exists()


def test_thumbnail_budget_too_small_is_an_error(tmp_path):
    src = _save(tmp_path / "a.png", _noise((64, 64)))
    with pytest.raises(ValueError, match="within 50 bytes"):
        make_thumbnail(src, tmp_path / "t.jpg", max_bytes=50)
    assert not (tmp_path / "t.jpg").exists()


# --------------------------------------------------------------------------- scan_folder / relative_uri


@pytest.fixture
def project(tmp_path):
    """A project root with images, other files, hidden entries and links inside and outside."""
    root = tmp_path / "project"
    outside = tmp_path / "outside"
    tiny = Image.new("RGB", (2, 2), RED)
    _save(root / "images" / "b.png", tiny)
    _save(root / "images" / "A.JPG", tiny)
    _save(root / "images" / "café ñ" / "ünï cödé 1.webp", tiny)
    _save(root / "images" / "sub dir" / "photo two.TIFF", tiny)
    (root / "images" / "notes.txt").write_text("hi")
    (root / "images" / "data.csv").write_text("a,b\n")
    _save(root / "images" / ".hidden.png", tiny)
    _save(root / "images" / ".cache" / "c.png", tiny)
    _save(root / "elsewhere" / "inside.png", tiny)
    _save(outside / "secret.png", tiny)
    _save(outside / "dir" / "x.png", tiny)
    links = root / "images"
    (links / "link_out.png").symlink_to(outside / "secret.png")
    (links / "dir_out").symlink_to(outside / "dir", target_is_directory=True)
    (links / "link_in.png").symlink_to(root / "elsewhere" / "inside.png")
    (links / "sub dir" / "loop").symlink_to(links, target_is_directory=True)
    (links / "self.png").symlink_to(links / "self.png")
    return root


def test_scan_folder_finds_images_in_sorted_order(project):
    result = scan_folder(project, "images")
    uris = [relative_uri(project, p) for p in result.files]
    assert uris == [
        "images/A.JPG",
        "images/b.png",
        "images/café ñ/ünï cödé 1.webp",
        "images/link_in.png",
        "images/sub dir/photo two.TIFF",
    ]
    assert all(p.is_absolute() for p in result.files)
    assert scan_folder(project, project / "images") == result  # absolute src, same answer


def test_scan_folder_skips_links_leaving_root_and_survives_loops(project):
    skipped = {relative_uri(project, p): reason for p, reason in scan_folder(project, "images").skipped}
    assert skipped["images/link_out.png"] == "link leaves the project root"
    assert skipped["images/dir_out"] == "link leaves the project root"
    assert skipped["images/sub dir/loop"] == "link to a folder already scanned"
    assert skipped["images/self.png"].startswith("cannot read")
    assert set(skipped) == {"images/link_out.png", "images/dir_out", "images/sub dir/loop", "images/self.png"}


def test_scan_folder_files_are_probe_ready(project):
    for path in scan_folder(project, "images").files:
        assert probe_image(path).ok, path


def test_scan_folder_rejects_src_outside_root(project, tmp_path):
    with pytest.raises(ValueError, match="outside the project root"):
        scan_folder(project, tmp_path / "outside")
    with pytest.raises(ValueError, match="outside the project root"):
        scan_folder(project, "../outside")
    with pytest.raises(ValueError, match="outside the project root"):
        scan_folder(project, "images/dir_out")  # a link inside root whose target is outside
    with pytest.raises(ValueError, match="not a folder"):
        scan_folder(project, "images/b.png")


def test_image_extensions_are_lower_case():
    assert IMAGE_EXTENSIONS == {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


def test_relative_uri(tmp_path):
    root = tmp_path / "root"
    (root / "a b").mkdir(parents=True)
    assert relative_uri(root, root / "a b" / "ç 1.png") == "a b/ç 1.png"
    assert relative_uri(str(root), str(root / "x.png")) == "x.png"
    with pytest.raises(ValueError, match="outside the project root"):
        relative_uri(root, tmp_path / "x.png")
    with pytest.raises(ValueError, match="outside the project root"):
        relative_uri(root, root / ".." / "x.png")
    with pytest.raises(ValueError, match="project root itself"):
        relative_uri(root, root)


def test_relative_uri_through_linked_root(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    alias = tmp_path / "alias"
    alias.symlink_to(real, target_is_directory=True)
    _save(real / "p.png", Image.new("RGB", (1, 1)))
    files = scan_folder(alias, ".").files
    assert files == [real / "p.png"]
    assert relative_uri(alias, files[0]) == "p.png"
    assert relative_uri(real, alias / "p.png") == "p.png"
