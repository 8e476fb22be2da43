"""Reading images safely: find them, check them, load them as RGB, thumbnail them.

Every function here treats the files as untrusted input. A file that is empty,
truncated, not an image at all or a decompression bomb never crashes an import:
:func:`probe_image` turns it into a :class:`ProbeResult` with a readable
``reason``, and :func:`load_rgb` raises :class:`ImageError` (a ``ValueError``).

Pillow raises a handful of exception types on bad input (``OSError`` and its
subclass ``PIL.UnidentifiedImageError``, ``SyntaxError``, ``ValueError``,
``EOFError``, ``struct.error`` and ``Image.DecompressionBombError``); those are
the only ones caught.
"""
from __future__ import annotations

import hashlib
import io
import logging
import os
import stat
import struct
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

__all__ = [
    "IMAGE_EXTENSIONS",
    "MAX_PIXELS",
    "ImageError",
    "ProbeResult",
    "ScanResult",
    "load_rgb",
    "load_rgb_or_grey",
    "make_thumbnail",
    "probe_and_thumbnail",
    "probe_image",
    "relative_uri",
    "relative_uris",
    "scan_folder",
]

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
"""File extensions treated as images (compared in lower case)."""

MAX_PIXELS = 89_478_485
"""Largest accepted ``width * height``; anything bigger is treated as a decompression bomb.

Same value as Pillow's default ``Image.MAX_IMAGE_PIXELS`` (about 0.25 GiB of
24-bit pixels, 9459 x 9459). It is checked here on the header size before any
pixel is decoded, so the limit holds whatever Pillow's global setting is.
"""

THUMBNAIL_QUALITIES = (85, 75, 65, 55, 45, 35, 25, 15)
"""JPEG qualities tried in turn by :func:`make_thumbnail` until the file is small enough."""

_HASH_CHUNK = 1 << 20
READ_WHOLE_BYTES = 64 << 20
"""Files up to this size are read into memory once by :func:`probe_and_thumbnail`, then hashed
and decoded from that copy; bigger ones are hashed in a stream and decoded from the file."""
_ORIENTATION_TAG = 0x0112
_SWAPPING_ORIENTATIONS = frozenset({5, 6, 7, 8})  # transpose / rotate 90 / transverse / rotate 270
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa"})
_INT_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})

# Exceptions Pillow raises on malformed input; nothing broader is ever caught.
_PIL_ERRORS = (
    UnidentifiedImageError,
    OSError,
    Image.DecompressionBombError,
    Image.DecompressionBombWarning,
    SyntaxError,
    ValueError,
    EOFError,
    struct.error,
)


class ImageError(ValueError):
    """An image file that cannot be used, with the reason in one line.

    Parameters
    ----------
    path : str or os.PathLike
        The offending file.
    reason : str
        Why it cannot be used, e.g. ``"empty file"``.
    """

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # keep it picklable for worker processes
        return (type(self), (self.path, self.reason))


@dataclass(frozen=True)
class ProbeResult:
    """What :func:`probe_image` learned about one file.

    Attributes
    ----------
    ok : bool
        True when the whole image decodes and is within :data:`MAX_PIXELS`.
    width, height : int or None
        Upright size in pixels (after the EXIF orientation); None unless ``ok``.
    sha256 : str or None
        Hex digest of the file bytes; None only when the file cannot be read.
    reason : str or None
        Why the image is unusable; None when ``ok``.
    """

    ok: bool
    width: int | None
    height: int | None
    sha256: str | None
    reason: str | None


@dataclass(frozen=True)
class ScanResult:
    """Image files found by :func:`scan_folder`.

    Attributes
    ----------
    files : list of Path
        Absolute paths under the resolved project root, sorted.
    skipped : list of (Path, str)
        Entries that look like images (or are linked folders) but were not
        taken, each with the reason.
    """

    files: list[Path]
    skipped: list[tuple[Path, str]]


# --------------------------------------------------------------------------- helpers


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _os_reason(exc: OSError) -> str:
    return exc.strerror or _one_line(exc)


def _is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _hash_file(path: Path) -> tuple[str, int]:
    """(sha256 hex digest, size in bytes) of a file, read in chunks."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _too_large(width: int, height: int) -> str:
    return f"image too large: {width}x{height} pixels exceeds limit of {MAX_PIXELS} pixels"


def _header_size_unchecked(path: Path) -> tuple[int, int] | None:
    """Size from the header, bypassing Pillow's global pixel limit.

    Used only to word the error for a file that ``Image.open`` refused as a
    decompression bomb; returns None when no plugin reads the header.
    """
    Image.init()
    try:
        with open(path, "rb") as fp:
            prefix = fp.read(16)
            for fmt in Image.ID:
                factory, accept = Image.OPEN[fmt]
                accepted = True if accept is None else accept(prefix)
                if isinstance(accepted, str) or not accepted:
                    continue
                fp.seek(0)
                try:
                    im = factory(fp, os.fspath(path))
                except (*_PIL_ERRORS, IndexError, TypeError):
                    continue
                return im.size
    except OSError:
        return None
    return None


def _open_error(path: Path, exc: BaseException) -> ImageError:
    if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        size = _header_size_unchecked(path)
        if size is not None:
            return ImageError(path, _too_large(*size))
        return ImageError(path, f"image too large: {_one_line(exc)}")
    if isinstance(exc, UnidentifiedImageError):
        try:
            empty = path.stat().st_size == 0
        except OSError:
            empty = False
        return ImageError(path, "empty file" if empty else "not an image (cannot identify format)")
    if isinstance(exc, OSError) and exc.strerror:
        return ImageError(path, f"cannot read file: {exc.strerror}")
    return _corrupt(path, exc)


def _corrupt(path: Path, exc: BaseException) -> ImageError:
    return ImageError(path, f"truncated or corrupt image data: {_one_line(exc)}")


@contextmanager
def _open_checked(path: Path, data: bytes | None = None) -> Iterator[ImageFile.ImageFile]:
    """Open an image (header only) and enforce the size limits.

    ``data``, when given, is the content of ``path`` already read; errors still name ``path``.

    Raises
    ------
    ImageError
        If the file cannot be identified or exceeds :data:`MAX_PIXELS`.
    """
    try:
        im = Image.open(path if data is None else io.BytesIO(data))
    except _PIL_ERRORS as exc:
        raise _open_error(path, exc) from exc
    with im:
        width, height = im.size
        if width * height > MAX_PIXELS:
            raise ImageError(path, _too_large(width, height))
        if width < 1 or height < 1:
            raise ImageError(path, f"invalid image size {width}x{height}")
        yield im


def _orientation(im: Image.Image) -> int:
    value = im.getexif().get(_ORIENTATION_TAG, 1)
    return value if isinstance(value, int) else 1


def _int_to_l(im: Image.Image) -> Image.Image:
    """Scale a 16/32-bit integer image to 8-bit grey without clipping.

    16-bit modes map 0..65535 linearly onto 0..255. Mode ``I`` is read as
    8-bit when its values fit in 0..255, as 16-bit when they fit in 0..65535,
    and is otherwise stretched from its minimum to its maximum.
    """
    arr = np.asarray(im).astype(np.int64)
    lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
    if im.mode != "I" or (lo >= 0 and hi > 255 and hi <= 65535):
        out = (arr * 255 + 32767) // 65535
    elif lo >= 0 and hi <= 255:
        out = arr
    else:
        out = (arr - lo) * 255 // max(hi - lo, 1)
    return Image.fromarray(out.astype(np.uint8), mode="L")


def _float_to_l(im: Image.Image) -> Image.Image:
    """Scale a float image to 8-bit grey: 0..1 as is, anything else min-max stretched."""
    arr = np.nan_to_num(np.asarray(im, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
    if lo < 0.0 or hi > 1.0:
        arr = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
    return Image.fromarray(np.clip(np.rint(arr * 255.0), 0, 255).astype(np.uint8), mode="L")


def _to_rgb(im: Image.Image, *, keep_grey: bool = False) -> Image.Image:
    """Convert any Pillow mode to RGB; transparency is composited on white.

    With ``keep_grey``, an image that would become RGB by repeating one grey channel three
    times (mode ``L`` without transparency, after 16-bit/float scaling) is returned as ``L``.
    """
    if im.mode in _INT_MODES:
        im = _int_to_l(im)
    elif im.mode == "F":
        im = _float_to_l(im)
    if im.mode in _ALPHA_MODES or "transparency" in im.info:
        rgba = im.convert("RGBA")
        out = Image.new("RGB", rgba.size, (255, 255, 255))
        out.paste(rgba, mask=rgba.getchannel("A"))
        return out
    if im.mode == "RGB" or (keep_grey and im.mode == "L"):
        return im
    return im.convert("RGB")


# --------------------------------------------------------------------------- public


def probe_image(path: str | os.PathLike[str]) -> ProbeResult:
    """Check that a file is a complete, decodable image of acceptable size.

    The file is hashed (streamed), its header is read and checked against
    :data:`MAX_PIXELS` before any pixel is decoded, then it is verified and
    fully decoded once, so truncated files are caught. A 1x1 image is fine.

    Parameters
    ----------
    path : str or os.PathLike
        The file to check.

    Returns
    -------
    ProbeResult
        Never raises for a bad file: the problem is in ``reason``, e.g.
        ``"empty file"``, ``"not an image (cannot identify format)"``,
        ``"truncated or corrupt image data: ..."`` or
        ``"image too large: 20000x20000 pixels exceeds limit of ... pixels"``.
    """
    path = Path(path)
    try:
        sha256, size = _hash_file(path)
    except OSError as exc:
        return ProbeResult(False, None, None, None, f"cannot read file: {_os_reason(exc)}")
    return _probe_decoded(path, None, sha256, size)


def _probe_decoded(path: Path, data: bytes | None, sha256: str, size: int,
                   then: Callable[[ImageFile.ImageFile], None] | None = None) -> ProbeResult:
    """The checks of :func:`probe_image` after hashing: header, verify, one full decode.

    ``data`` is the file's content when already read (else the file is opened); ``then`` gets the
    fully decoded image while it is still open (its own errors are its own business).
    """
    if size == 0:
        return ProbeResult(False, None, None, sha256, "empty file")
    try:
        with _open_checked(path, data) as im:
            try:
                im.verify()
            except _PIL_ERRORS as exc:
                raise _corrupt(path, exc) from exc
        with _open_checked(path, data) as im:
            try:
                im.load()
                orientation = _orientation(im)
            except _PIL_ERRORS as exc:
                raise _corrupt(path, exc) from exc
            width, height = im.size
            if then is not None:
                then(im)
    except ImageError as exc:
        return ProbeResult(False, None, None, sha256, exc.reason)
    if orientation in _SWAPPING_ORIENTATIONS:
        width, height = height, width
    return ProbeResult(True, width, height, sha256, None)


def load_rgb(path: str | os.PathLike[str], *, max_side: int | None = None) -> Image.Image:
    """Load an image upright, as 8-bit RGB.

    EXIF orientation is applied; CMYK, palette, 1-bit, grey, 16-bit and float
    images are converted (16-bit scaled to 8-bit, not clipped); transparent
    pixels are composited on white; animated GIF/WebP give their first frame.

    Parameters
    ----------
    path : str or os.PathLike
        The image file.
    max_side : int, optional
        If given, the image is shrunk (aspect ratio kept) so that neither side
        exceeds it; JPEGs are decoded at reduced scale when possible.
        Never enlarged.

    Returns
    -------
    PIL.Image.Image
        A loaded image in mode ``"RGB"``, independent of the file.

    Raises
    ------
    ImageError
        If the file is not a usable image (see :func:`probe_image` reasons).
    ValueError
        If ``max_side`` is less than 1.
    """
    if max_side is not None and max_side < 1:
        raise ValueError(f"max_side must be at least 1, got {max_side}")
    return _load_rgb(Path(path), None, max_side)


def load_rgb_or_grey(path: str | os.PathLike[str]) -> Image.Image:
    """:func:`load_rgb`, except that a grey image comes back grey (mode ``"L"``).

    A grey image without transparency would become RGB by repeating its one channel three
    times; a caller that resizes it first (as embedding does) can repeat it afterwards, on
    fewer pixels, and gets the same values. Every other image is exactly :func:`load_rgb`'s.
    """
    return _load_rgb(Path(path), None, None, keep_grey=True)


def _load_rgb(path: Path, data: bytes | None, max_side: int | None, *, keep_grey: bool = False) -> Image.Image:
    with _open_checked(path, data) as im:
        upright = _upright(path, im, max_side)
    return _finish_rgb(path, upright, max_side, keep_grey=keep_grey)


def _upright(path: Path, im: ImageFile.ImageFile, max_side: int | None) -> Image.Image:
    """Decode an open image (JPEGs at reduced scale for ``max_side``) and apply its EXIF orientation."""
    try:
        if max_side is not None and im.format == "JPEG":
            im.draft("RGB", (max_side, max_side))
        im.load()
        return ImageOps.exif_transpose(im)  # a new image, detached from the file
    except _PIL_ERRORS as exc:
        raise _corrupt(path, exc) from exc


def _finish_rgb(path: Path, upright: Image.Image, max_side: int | None, *, keep_grey: bool = False) -> Image.Image:
    try:
        rgb = _to_rgb(upright, keep_grey=keep_grey)
    except ValueError as exc:
        raise ImageError(path, f"unsupported colour mode {upright.mode}: {_one_line(exc)}") from exc
    if max_side is not None and max(rgb.size) > max_side:
        rgb.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return rgb


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


def scan_folder(root: str | os.PathLike[str], src: str | os.PathLike[str]) -> ScanResult:
    """Find the image files under ``src``, a folder inside the project ``root``.

    Files are kept by extension (:data:`IMAGE_EXTENSIONS`, any case); other
    files are ignored silently, as are hidden files and folders (names
    starting with ``.``). Symbolic links are followed while their target stays
    inside ``root``; a link whose target leaves it is skipped with the reason
    ``"link leaves the project root"``. Each real folder is walked once, so
    link loops end. Whether files decode is left to :func:`probe_image`.

    Parameters
    ----------
    root : str or os.PathLike
        The project root.
    src : str or os.PathLike
        The folder to walk; a relative path is taken relative to ``root``.

    Returns
    -------
    ScanResult
        ``files`` as absolute paths under the resolved ``root`` (link names
        kept, not resolved), sorted by their path components, and ``skipped``
        with reasons, in the same order.

    Raises
    ------
    ValueError
        If ``root`` is not a folder, or ``src`` is not a folder inside it.
    """
    root_real = Path(os.path.realpath(root))
    if not root_real.is_dir():
        raise ValueError(f"project root is not a folder: {root}")
    start = Path(os.path.realpath(Path(root) / src))
    if not start.is_relative_to(root_real):
        raise ValueError(f"{src} is outside the project root {root}")
    if not start.is_dir():
        raise ValueError(f"not a folder: {src}")

    files: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    visited = {start}
    stack = [start]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            skipped.append((folder, f"cannot read folder: {_os_reason(exc)}"))
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = folder / entry.name
            is_image = _is_image_name(entry.name)
            try:
                is_link = entry.is_symlink()
                st = os.stat(path) if is_link else entry.stat(follow_symlinks=False)
            except OSError as exc:
                if is_image:
                    skipped.append((path, f"cannot read: {_os_reason(exc)}"))
                continue
            is_dir = stat.S_ISDIR(st.st_mode)
            if is_link:
                target = Path(os.path.realpath(path))
                if not target.is_relative_to(root_real):
                    if is_dir or is_image:
                        skipped.append((path, "link leaves the project root"))
                    continue
            if is_dir:
                real = Path(os.path.realpath(path)) if is_link else path
                if real in visited:
                    skipped.append((path, "link to a folder already scanned"))
                    continue
                visited.add(real)
                stack.append(path)
            elif is_image:
                if stat.S_ISREG(st.st_mode):
                    files.append(path)
                else:
                    skipped.append((path, "not a regular file"))

    def order(item: Path) -> tuple[str, ...]:
        return item.relative_to(root_real).parts

    files.sort(key=order)
    skipped.sort(key=lambda pair: order(pair[0]))
    log.info("scanned %s: %d image files, %d skipped", start, len(files), len(skipped))
    return ScanResult(files=files, skipped=skipped)


def relative_uri(root: str | os.PathLike[str], path: str | os.PathLike[str]) -> str:
    """The posix-style path of ``path`` relative to the project ``root``.

    ``path`` is compared with ``root`` as given and with ``root`` resolved,
    so paths returned by :func:`scan_folder` work either way. The file name
    itself is not resolved: a link inside the root keeps its own name.

    Parameters
    ----------
    root : str or os.PathLike
        The project root.
    path : str or os.PathLike
        A path inside it (relative paths are taken from the working folder).

    Returns
    -------
    str
        For example ``"photos/café 1.jpg"``.

    Raises
    ------
    ValueError
        If ``path`` is not inside ``root`` (or is ``root`` itself).
    """
    p = Path(os.path.abspath(path))
    candidates = (p, Path(os.path.realpath(p.parent)) / p.name)
    bases = (Path(os.path.abspath(root)), Path(os.path.realpath(root)))
    for candidate in candidates:
        for base in bases:
            if candidate == base:
                raise ValueError(f"{path} is the project root itself, not a file inside it")
            if candidate.is_relative_to(base):
                return candidate.relative_to(base).as_posix()
    raise ValueError(f"{path} is outside the project root {root}")


def relative_uris(root: str | os.PathLike[str], paths: Sequence[str | os.PathLike[str]]) -> list[str | None]:
    """:func:`relative_uri` of many paths; None where it would raise.

    Same answers, but each folder is resolved once rather than once per file.
    """
    bases = (os.path.abspath(root), os.path.realpath(root))
    real_parents: dict[str, str] = {}
    out: list[str | None] = []
    for path in paths:
        p = os.path.abspath(path)
        parent, name = os.path.split(p)
        real = real_parents.get(parent)
        if real is None:
            real = real_parents[parent] = os.path.realpath(parent)
        uri = None
        if os.name == "posix" and name:
            for candidate in (p, os.path.join(real, name)):
                for base in bases:
                    prefix = base if base.endswith("/") else base + "/"
                    if candidate.startswith(prefix) and len(candidate) > len(prefix):
                        uri = candidate[len(prefix):]
                        break
                    if candidate == base:
                        break
                else:
                    continue
                break
        else:
            try:
                uri = relative_uri(root, path)
            except ValueError:
                uri = None
        out.append(uri)
    return out
