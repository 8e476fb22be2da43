"""Reading images safely: check them and load them upright as RGB.

Finding the image files of a folder is :mod:`labeling.data.scan`'s job; writing thumbnails of
them is :mod:`labeling.data.thumbnails`'s.

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
import os
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

__all__ = [
    "MAX_PIXELS",
    "ImageError",
    "ProbeResult",
    "load_rgb",
    "load_rgb_or_grey",
    "probe_image",
]

MAX_PIXELS = 89_478_485
"""Largest accepted ``width * height``; anything bigger is treated as a decompression bomb.

Same value as Pillow's default ``Image.MAX_IMAGE_PIXELS`` (about 0.25 GiB of
24-bit pixels, 9459 x 9459). It is checked here on the header size before any
pixel is decoded, so the limit holds whatever Pillow's global setting is.
"""

_HASH_CHUNK = 1 << 20
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




# --------------------------------------------------------------------------- helpers


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _os_reason(exc: OSError) -> str:
    return exc.strerror or _one_line(exc)



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
