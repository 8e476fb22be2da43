"""A card shows the original where the image element passes it through untouched, else an upright preview."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from labeling.data.previews import MAX_ORIGINAL_WIDTH, PREVIEW_SIDE, card_image, prepare, preview_path


def _photo(path: Path, size: tuple[int, int], *, fmt: str = "JPEG", orientation: int | None = None,
           mode: str = "RGB") -> Path:
    w, h = size
    a = np.zeros((h, w, 3), dtype=np.uint8)
    a[: h // 2, :, 0] = 255  # red top half: tells upright from rotated
    im = Image.fromarray(a).convert(mode)
    kw = {}
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kw["exif"] = exif.tobytes()
    im.save(path, fmt, **kw)
    return path


def test_small_jpeg_and_png_are_shown_as_they_are(tmp_path):
    data = tmp_path / ".quorum"
    jpg = _photo(tmp_path / "a.jpg", (640, 480))
    png = _photo(tmp_path / "b.png", (300, 200), fmt="PNG")
    assert card_image(data, jpg) == (str(jpg), "JPEG", False, None)
    assert card_image(data, png) == (str(png), "PNG", False, None)  # kept a PNG: not re-encoded as JPEG
    assert not (data / "previews").exists()


def test_a_large_photo_gets_one_preview_within_the_content_width(tmp_path):
    data = tmp_path / ".quorum"
    big = _photo(tmp_path / "big.jpg", (2000, 1500))
    shown = card_image(data, big)
    assert shown.preview and shown.format == "JPEG" and shown.path != str(big)
    with Image.open(shown.path) as im:
        assert max(im.size) == PREVIEW_SIDE and im.width <= MAX_ORIGINAL_WIDTH and im.format == "JPEG"
    stamp = os.stat(shown.path).st_mtime_ns
    assert card_image(data, big).path == shown.path and os.stat(shown.path).st_mtime_ns == stamp  # made once
    os.utime(big, ns=(stamp + 10**9, stamp + 10**9))  # the file changed: a new preview
    assert card_image(data, big).path != shown.path


def test_an_exif_rotated_photo_is_shown_upright(tmp_path):
    data = tmp_path / ".quorum"
    # stored 400 x 300 with orientation 6 (rotate 90 clockwise to view): upright it is 300 x 400
    rotated = _photo(tmp_path / "r.jpg", (400, 300), orientation=6)
    shown = card_image(data, rotated)
    assert shown.preview
    with Image.open(shown.path) as im:
        assert im.size == (300, 400)
        px = np.asarray(im.convert("RGB"))
    # the red half was on top; turned clockwise it is on the right
    assert px[:, -20:, 0].mean() > 200 and px[:, :20, 0].mean() < 50


def test_formats_the_element_would_convert_get_a_preview(tmp_path):
    data = tmp_path / ".quorum"
    webp = _photo(tmp_path / "c.webp", (320, 240), fmt="WEBP")
    shown = card_image(data, webp)
    assert shown.preview and shown.format == "JPEG"


def test_an_unreadable_image_comes_back_as_itself_with_its_problem(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    got = card_image(tmp_path / ".quorum", bad)
    assert got[:3] == (str(bad), "auto", False) and got.problem.startswith("the image cannot be shown")


def test_prepare_makes_only_the_previews_needed(tmp_path):
    data = tmp_path / ".quorum"
    paths = [_photo(tmp_path / "big.jpg", (1600, 1000)), _photo(tmp_path / "small.jpg", (100, 100)),
             tmp_path / "missing.jpg"]
    assert prepare(data, paths) == 1
    assert preview_path(data, paths[0]).is_file()
    assert prepare(data, paths) == 0  # already there


def test_small_card_images_travel_inline_as_data_urls(tmp_path):
    import base64

    from labeling.data.previews import INLINE_MAX_BYTES, CardImage, inline_url

    png = _photo(tmp_path / "s.png", (64, 48), fmt="PNG")
    url = inline_url(CardImage(str(png), "PNG", False))
    assert url.startswith("data:image/png;base64,")
    assert base64.b64decode(url.split(",", 1)[1]) == png.read_bytes()
    big = tmp_path / "big.jpg"
    big.write_bytes(b"\xff\xd8" + bytes(INLINE_MAX_BYTES))
    assert inline_url(CardImage(str(big), "JPEG", False)) is None  # too large: the element's own URL
    assert inline_url(CardImage(str(png), "auto", False)) is None  # unknown format
    assert inline_url(CardImage(str(tmp_path / "gone.png"), "PNG", False)) is None


def test_a_missing_or_broken_file_is_said_in_one_line(tmp_path):
    data = tmp_path / ".quorum"
    gone = card_image(data, tmp_path / "gone.jpg")
    assert gone.problem == "the image file is missing (moved or deleted)"
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    got = card_image(data, broken)
    assert got.problem.startswith("the image cannot be shown:") and "\n" not in got.problem
    assert card_image(data, _photo(tmp_path / "ok.jpg", (50, 40))).problem is None
