"""The image a card shows: the original file where a browser can show it as it is, else a preview.

The Label page hands the card's image to the framework's image element. Given a file, that element
decodes and re-encodes it on *every* page run whenever it is wider than the content width (1,460 px)
or not a JPEG (a PNG without transparency becomes a JPEG, a WebP or TIFF is converted): measured on
2 cores, 125 ms of the server's time per key press for a 12-megapixel phone photo, and such a resized
photo lost its EXIF orientation and showed on its side. So a card shows:

- the original file, when it is a JPEG, PNG or GIF no wider than :data:`MAX_ORIGINAL_WIDTH`, upright
  as stored (no EXIF rotation), handed over with its own format so nothing is re-encoded;
- otherwise a preview: upright, RGB, longest side :data:`PREVIEW_SIDE`, JPEG, written once beside the
  thumbnails (``.quorum/previews/``, named by the file's path, size and modification time, so an
  edited file gets a new one) and read from disk on later runs.

:func:`card_image` decides and makes the preview when needed; :func:`prepare` makes previews ahead of
time (the next cards of the queue) so that a key press never waits for one; :func:`inline_url` hands a
small one (the demo's, most previews) to the page inside the card itself, so that the browser does not
fetch it in a second request from a server still busy drawing the rest of the card.
"""
from __future__ import annotations

import base64
import hashlib
import io
import logging
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import NamedTuple

from PIL import Image

from labeling.data.images import ImageError, load_rgb
from labeling.data.thumbnails import _write_file_atomic

log = logging.getLogger(__name__)

PREVIEW_DIR = "previews"
PREVIEW_SIDE = 1280
"""Longest side of a preview: sharp on a high-density screen at the card's width, below the content
width at which the image element would resize it again."""
MAX_ORIGINAL_WIDTH = 1460
"""The widest original the image element passes through untouched (its content width)."""
PREVIEW_QUALITY = 85
AS_IS = {"JPEG": "JPEG", "PNG": "PNG", "GIF": "GIF"}
"""Formats shown as they are, and the output format that keeps them so."""
EXIF_ORIENTATION = 0x0112


class CardImage(NamedTuple):
    path: str
    """The file to show."""
    format: str
    """Its format, handed to the image element so that it is not converted ("JPEG", "PNG" or "GIF")."""
    preview: bool
    """Whether ``path`` is a preview rather than the original."""
    problem: str | None = None
    """Why nothing can be shown (the file is gone or is not a readable image), in one line; None when
    ``path`` can be shown."""


def _shown_as_is(path: Path) -> str | None:
    """The output format when the original can be shown untouched, else None (reads the header only)."""
    try:
        with Image.open(path) as im:
            fmt = AS_IS.get(im.format or "")
            if fmt is None or im.width > MAX_ORIGINAL_WIDTH:
                return None
            if fmt == "JPEG" and im.getexif().get(EXIF_ORIENTATION, 1) not in (0, 1):
                return None  # the browser and the element disagree on rotation: show it upright ourselves
            return fmt
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError):
        return None


def preview_path(data_dir: Path, path: Path) -> Path:
    """Where the preview of ``path`` lives: named by the file's path, size and modification time."""
    st = path.stat()
    key = hashlib.sha256(f"{path.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\0{PREVIEW_SIDE}".encode()).hexdigest()
    return data_dir / PREVIEW_DIR / key[:2] / f"{key}.jpg"


def make_preview(path: Path, dst: Path) -> Path:
    """Write the upright JPEG preview of ``path`` to ``dst`` (nothing to do when it exists)."""
    if dst.is_file() and dst.stat().st_size > 0:
        return dst
    im = load_rgb(path, max_side=PREVIEW_SIDE)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=PREVIEW_QUALITY)
    _write_file_atomic(dst, buf.getvalue())
    log.debug("preview %s: %dx%d", dst, im.width, im.height)
    return dst


INLINE_MAX_BYTES = 256_000
"""Files up to this size travel inside the page update as a data URL (see :func:`inline_url`)."""
MIME = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif"}


def inline_url(shown: CardImage) -> str | None:
    """``shown`` as a ``data:`` URL when it is at most :data:`INLINE_MAX_BYTES`, else None.

    Given a file, the image element registers it with the server's media store and the browser fetches
    it in a second request, which waits while the server still runs the rest of the page: on a key
    press the next image painted after that round trip. A data URL arrives with the card itself and is
    handed to the browser as it is (no decoding, hashing or storing on the server)."""
    mime = MIME.get(shown.format)
    if mime is None:
        return None
    try:
        with open(shown.path, "rb") as fh:
            data = fh.read(INLINE_MAX_BYTES + 1)
    except OSError:
        return None
    if len(data) > INLINE_MAX_BYTES:
        return None
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def card_image(data_dir: Path, path: str | os.PathLike[str]) -> CardImage:
    """The file a card shows for the image at ``path`` (see the module docstring).

    A file that is gone or cannot be read comes back with its ``problem`` said in one line, for the page
    to say so instead of the image (the image element would stop the page with an error).
    """
    src = Path(path)
    fmt = _shown_as_is(src)
    if fmt is not None:
        return CardImage(str(src), fmt, False)
    if not src.is_file():
        return CardImage(str(src), "auto", False, "the image file is missing (moved or deleted)")
    try:
        dst = make_preview(src, preview_path(data_dir, src))
    except ImageError as exc:
        return CardImage(str(src), "auto", False, f"the image cannot be shown: {exc.reason}")
    except (OSError, ValueError) as exc:
        log.warning("no preview of %s: %s", src, exc)
        return CardImage(str(src), "auto", False, f"the image cannot be shown: {exc}")
    return CardImage(str(dst), "JPEG", True)


def prepare(data_dir: Path, paths: Iterable[str | os.PathLike[str]]) -> int:
    """Make the previews that the cards of ``paths`` will need (:func:`card_image`, as a card would);
    returns how many were made."""
    made = 0
    for p in paths:
        try:
            existed = preview_path(data_dir, Path(p)).is_file()
        except OSError:  # gone: its card will say so
            continue
        made += card_image(data_dir, p).preview and not existed
    return made


class Prefetcher:
    """Makes previews in one background thread, so that the next cards' are ready before their key press.

    ``submit(paths)`` hands it a function that names the images (evaluated in the thread: working out
    the next cards of a queue costs the page nothing); a request made while one runs replaces any that
    waits, so a fast annotator never piles up work for cards already gone.
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self._lock = threading.Lock()
        self._waiting: Callable[[], Iterable[str]] | None = None
        self._thread: threading.Thread | None = None

    def submit(self, paths: Callable[[], Iterable[str]]) -> None:
        with self._lock:
            self._waiting = paths
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="quorum-previews", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            with self._lock:
                job, self._waiting = self._waiting, None
                if job is None:
                    self._thread = None
                    return
            try:
                prepare(self.data_dir, job())
            except Exception:  # noqa: BLE001 - a preview made ahead is an optimisation: never an error
                log.debug("previews ahead of time failed", exc_info=True)

    def join(self, timeout: float | None = None) -> None:
        """Wait until nothing is left to do (tests, shutdown)."""
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
