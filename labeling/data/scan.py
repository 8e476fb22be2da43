"""Finding image files in a project: walk a folder, name files relative to the project root.

:func:`scan_folder` walks a folder inside the project root, keeping files whose extension is in
:data:`IMAGE_EXTENSIONS` and following symbolic links only while they stay inside the root;
:func:`relative_uri` and :func:`relative_uris` turn the paths found into the posix-style names the
project stores. Nothing here opens an image: whether a file decodes is
:func:`labeling.data.images.probe_image`'s job.
"""
from __future__ import annotations

import logging
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from labeling.data.images import _os_reason

__all__ = [
    "IMAGE_EXTENSIONS",
    "ScanResult",
    "relative_uri",
    "relative_uris",
    "scan_folder",
]

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
"""File extensions treated as images (compared in lower case)."""


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


def _is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _resolve_scan_start(root: str | os.PathLike[str], src: str | os.PathLike[str]) -> tuple[Path, Path]:
    """The resolved project root and ``src`` folder, checking ``src`` is a folder inside the root."""
    root_real = Path(os.path.realpath(root))
    if not root_real.is_dir():
        raise ValueError(f"project root is not a folder: {root}")
    start = Path(os.path.realpath(Path(root) / src))
    if not start.is_relative_to(root_real):
        raise ValueError(f"{src} is outside the project root {root}")
    if not start.is_dir():
        raise ValueError(f"not a folder: {src}")
    return root_real, start


def _read_folder(folder: Path, skipped: list[tuple[Path, str]]) -> list[os.DirEntry[str]] | None:
    """The entries of ``folder`` sorted by name, or None (noted in ``skipped``) if it cannot be read."""
    try:
        with os.scandir(folder) as it:
            return sorted(it, key=lambda e: e.name)
    except OSError as exc:
        skipped.append((folder, f"cannot read folder: {_os_reason(exc)}"))
        return None


def _scan_entry(
    folder: Path,
    entry: os.DirEntry[str],
    root_real: Path,
    visited: set[Path],
    stack: list[Path],
    files: list[Path],
    skipped: list[tuple[Path, str]],
) -> None:
    """Sort one folder entry into ``files``, ``skipped`` or the folders still to walk (``stack``)."""
    if entry.name.startswith("."):
        return
    path = folder / entry.name
    is_image = _is_image_name(entry.name)
    try:
        is_link = entry.is_symlink()
        st = os.stat(path) if is_link else entry.stat(follow_symlinks=False)
    except OSError as exc:
        if is_image:
            skipped.append((path, f"cannot read: {_os_reason(exc)}"))
        return
    is_dir = stat.S_ISDIR(st.st_mode)
    if is_link and not Path(os.path.realpath(path)).is_relative_to(root_real):
        if is_dir or is_image:
            skipped.append((path, "link leaves the project root"))
        return
    if is_dir:
        _queue_folder(path, is_link, visited, stack, skipped)
    elif is_image:
        if stat.S_ISREG(st.st_mode):
            files.append(path)
        else:
            skipped.append((path, "not a regular file"))


def _queue_folder(
    path: Path, is_link: bool, visited: set[Path], stack: list[Path], skipped: list[tuple[Path, str]],
) -> None:
    """Add the folder ``path`` to ``stack`` unless its real folder was already visited."""
    real = Path(os.path.realpath(path)) if is_link else path
    if real in visited:
        skipped.append((path, "link to a folder already scanned"))
        return
    visited.add(real)
    stack.append(path)


def scan_folder(root: str | os.PathLike[str], src: str | os.PathLike[str]) -> ScanResult:
    """Find the image files under ``src``, a folder inside the project ``root``.

    Files are kept by extension (:data:`IMAGE_EXTENSIONS`, any case); other
    files are ignored silently, as are hidden files and folders (names
    starting with ``.``). Symbolic links are followed while their target stays
    inside ``root``; a link whose target leaves it is skipped with the reason
    ``"link leaves the project root"``. Each real folder is walked once, so
    link loops end. Whether files decode is left to
    :func:`labeling.data.images.probe_image`.

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
    root_real, start = _resolve_scan_start(root, src)
    files: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    visited = {start}
    stack = [start]
    while stack:
        folder = stack.pop()
        entries = _read_folder(folder, skipped)
        for entry in entries or ():
            _scan_entry(folder, entry, root_real, visited, stack, files, skipped)

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
