"""JPEG thumbnails of project images, written atomically and within a byte budget.

:func:`make_thumbnail` writes an upright JPEG of an image no larger than ``max_bytes``;
:func:`probe_and_thumbnail` does :func:`labeling.data.images.probe_image` and the thumbnail in one
read of the file, as the importer needs. Decoding and checking the image is
:mod:`labeling.data.images`'s job; this module only encodes and writes.
"""
from __future__ import annotations

import hashlib
import io
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageFile

from labeling.data.images import (
    ImageError,
    ProbeResult,
    _finish_rgb,
    _load_rgb,
    _os_reason,
    _probe_decoded,
    _upright,
    load_rgb,
    probe_image,
)

__all__ = ["READ_WHOLE_BYTES", "THUMBNAIL_QUALITIES", "make_thumbnail", "probe_and_thumbnail"]

log = logging.getLogger(__name__)

THUMBNAIL_QUALITIES = (85, 75, 65, 55, 45, 35, 25, 15)
"""JPEG qualities tried in turn by :func:`make_thumbnail` until the file is small enough."""

READ_WHOLE_BYTES = 64 << 20
"""Files up to this size are read into memory once by :func:`probe_and_thumbnail`, then hashed
and decoded from that copy; bigger ones are hashed in a stream and decoded from the file."""


def _encode_jpeg(im: Image.Image, max_bytes: int) -> bytes | None:
    for quality in THUMBNAIL_QUALITIES:
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=quality, optimize=True)
        if buf.tell() <= max_bytes:
            return buf.getvalue()
    return None


def make_thumbnail(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    max_side: int = 128,
    max_bytes: int = 20_000,
) -> Path:
    """Write an upright JPEG thumbnail of ``src`` to ``dst``, at most ``max_bytes``.

    The JPEG quality is lowered through :data:`THUMBNAIL_QUALITIES` until the
    file fits; if even the lowest quality is too big the image is shrunk
    further. The file is written to a temporary file beside ``dst`` and moved
    into place, so readers never see a partial thumbnail. Nothing is done when
    ``dst`` already exists, is not empty and is newer than ``src``; callers
    that change ``max_side`` or ``max_bytes`` should use a different ``dst``.

    Parameters
    ----------
    src : str or os.PathLike
        The image file.
    dst : str or os.PathLike
        Where to write the JPEG; missing parent folders are created.
    max_side : int, default 128
        Longest side of the thumbnail in pixels.
    max_bytes : int, default 20_000
        Largest file size in bytes.

    Returns
    -------
    Path
        ``dst``.

    Raises
    ------
    ImageError
        If ``src`` is not a usable image.
    ValueError
        If ``max_side`` or ``max_bytes`` is less than 1, or no JPEG of the
        image fits in ``max_bytes`` (a JPEG needs a few hundred bytes at least).
    """
    _check_thumbnail_args(max_side, max_bytes)
    src, dst = Path(src), Path(dst)
    try:
        src_mtime = src.stat().st_mtime_ns
    except OSError as exc:
        raise ImageError(src, f"cannot read file: {_os_reason(exc)}") from exc
    if _thumbnail_is_current(dst, src_mtime):
        return dst
    _write_thumbnail(src, load_rgb(src, max_side=max_side), dst, max_bytes)
    return dst


def _check_thumbnail_args(max_side: int, max_bytes: int) -> None:
    if max_side < 1:
        raise ValueError(f"max_side must be at least 1, got {max_side}")
    if max_bytes < 1:
        raise ValueError(f"max_bytes must be at least 1, got {max_bytes}")


def _thumbnail_is_current(dst: Path, src_mtime_ns: int) -> bool:
    try:
        dst_stat = dst.stat()
    except FileNotFoundError:
        return False
    return dst_stat.st_size > 0 and dst_stat.st_mtime_ns > src_mtime_ns


def _write_thumbnail(src: Path, im: Image.Image, dst: Path, max_bytes: int) -> None:
    """Encode ``im`` (RGB, already within the side limit) within ``max_bytes`` and write it atomically."""
    data = _encode_jpeg(im, max_bytes)
    while data is None and max(im.size) > 8:
        im = im.resize(
            (max(1, im.width * 3 // 4), max(1, im.height * 3 // 4)), Image.Resampling.LANCZOS
        )
        data = _encode_jpeg(im, max_bytes)
    if data is None:
        raise ValueError(f"{src}: cannot encode a JPEG thumbnail within {max_bytes} bytes")

    _write_file_atomic(dst, data)
    log.debug("thumbnail %s: %dx%d, %d bytes", dst, im.width, im.height, len(data))


def _write_file_atomic(dst: Path, data: bytes) -> None:
    """Write ``data`` (mode 0644) to a temporary file beside ``dst``, then rename it over ``dst``.

    Missing parent folders are created; the folder is only touched when the file cannot be
    created, and the temporary file only removed when something failed.
    """
    try:
        fd, tmp_name = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".tmp")
    except FileNotFoundError:
        dst.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    done = False
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dst)
        done = True
    finally:
        if not done:
            tmp.unlink(missing_ok=True)


def probe_and_thumbnail(
    path: str | os.PathLike[str],
    dst: str | os.PathLike[str] | Callable[[str], str | os.PathLike[str]],
    *,
    max_side: int = 128,
    max_bytes: int = 20_000,
) -> tuple[ProbeResult, str | None]:
    """:func:`probe_image`, then :func:`make_thumbnail` if the image is usable, in one pass.

    The file is opened and read once (files up to :data:`READ_WHOLE_BYTES`); the hash, the checks
    and the thumbnail all come from that one copy, and the full decode the probe does also feeds
    the thumbnail (JPEGs are decoded again at reduced scale, as :func:`load_rgb` does). The
    results are those of the two calls: the same :class:`ProbeResult`, the same thumbnail file.

    Parameters
    ----------
    path : str or os.PathLike
        The image file.
    dst : str, os.PathLike or callable
        Where the thumbnail goes, or ``sha256 hex digest -> that place``.
    max_side, max_bytes : int
        As in :func:`make_thumbnail`.

    Returns
    -------
    probe : ProbeResult
    problem : str or None
        ``"thumbnail failed: <reason>"`` when the image is usable but no thumbnail could be
        written; None otherwise. Never raises for a bad file.
    """
    _check_thumbnail_args(max_side, max_bytes)
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            st = os.fstat(fh.fileno())
            data = fh.read() if st.st_size <= READ_WHOLE_BYTES else None
    except OSError as exc:
        return ProbeResult(False, None, None, None, f"cannot read file: {_os_reason(exc)}"), None
    if data is None:  # large file: stream the hash, decode from the file
        probe = probe_image(path)
        if not probe.ok:
            return probe, None
        target = Path(dst(probe.sha256) if callable(dst) else dst)
        try:
            make_thumbnail(path, target, max_side=max_side, max_bytes=max_bytes)
        except (ValueError, OSError) as exc:
            return probe, f"thumbnail failed: {exc}"
        return probe, None
    sha256 = hashlib.sha256(data).hexdigest()
    target = Path(dst(sha256) if callable(dst) else dst)
    current = bool(data) and _thumbnail_is_current(target, st.st_mtime_ns)
    made: list[Image.Image] = []
    problem: list[ImageError] = []

    def thumbnail_source(im: ImageFile.ImageFile) -> None:
        if current or im.format == "JPEG":
            return  # JPEGs: decoded again below at reduced scale, as load_rgb(max_side) does
        try:
            made.append(_finish_rgb(path, _upright(path, im, None), max_side))
        except ImageError as exc:
            problem.append(exc)

    probe = _probe_decoded(path, data, sha256, len(data), thumbnail_source)
    if not probe.ok or current:
        return probe, None
    try:
        if problem:
            raise problem[0]
        rgb = made[0] if made else _load_rgb(path, data, max_side)
        _write_thumbnail(path, rgb, target, max_bytes)
    except (ValueError, OSError) as exc:
        return probe, f"thumbnail failed: {exc}"
    return probe, None
