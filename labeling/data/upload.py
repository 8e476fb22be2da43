"""Images brought in from the browser: uploaded files, or zip archives of them, saved into the project's
``uploads/<when>/`` folder and imported there with the same checks as any folder (unreadable, truncated
or oversized images are skipped with their reason, duplicates found by content).

Nothing an upload names reaches the filesystem outside that folder: a file's own name is reduced to a
plain name; a zip member's path keeps only plain folder names (no absolute path, no ``..``, no hidden
part), links and non-image members are left out, and an archive that would unpack past
:data:`MAX_UNPACKED_BYTES` or :data:`MAX_FILES` is refused whole before anything is written.
"""
from __future__ import annotations

import io
import re
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from labeling.data.scan import IMAGE_EXTENSIONS
from labeling.project import Project

MAX_UPLOAD_BYTES = 200 * 2 ** 20
"""The most one upload (all its files together) may hold, as sent."""
MAX_UNPACKED_BYTES = 2 * 2 ** 30
"""The most a zip archive may unpack to (a zip bomb is refused before anything is written)."""
MAX_FILES = 50_000
UPLOADS = "uploads"
_PLAIN = re.compile(r"[^A-Za-z0-9._ -]+")


class UploadError(ValueError):
    """An upload that cannot be taken (the message says why, in one line)."""


def plain_name(name: str) -> str:
    """A file or folder name safe to create: letters, digits, ``._ -``; never hidden, never empty."""
    cleaned = _PLAIN.sub("_", PurePosixPath(str(name).replace("\\", "/")).name).strip(" .")
    return cleaned[:150] or "file"


def _member_path(name: str) -> PurePosixPath | None:
    """A zip member's path with plain parts only; None for a folder, a hidden or unsafe path, a non-image."""
    parts = [p for p in str(name).replace("\\", "/").split("/") if p not in ("", ".")]
    if not parts or any(p == ".." or p.startswith(".") or p.startswith("__MACOSX") for p in parts):
        return None
    if PurePosixPath(parts[-1]).suffix.lower() not in IMAGE_EXTENSIONS:
        return None
    return PurePosixPath(*[plain_name(p) for p in parts])


def _plan(files: Sequence[tuple[str, bytes]]) -> tuple[list[tuple[PurePosixPath, object]], list[str]]:
    """(relative path, bytes or a zip member to read) for everything to write, and what was left out."""
    total = sum(len(data) for _name, data in files)
    if total > MAX_UPLOAD_BYTES:
        raise UploadError(f"the upload holds {total / 2**20:.0f} MiB; at most {MAX_UPLOAD_BYTES / 2**20:.0f} MiB at once")
    out, left_out, unpacked = [], [], 0
    for name, data in files:
        if str(name).lower().endswith(".zip"):
            try:
                archive = zipfile.ZipFile(io.BytesIO(data))
                members = archive.infolist()
            except zipfile.BadZipFile as exc:
                raise UploadError(f"{plain_name(name)} is not a readable zip archive ({exc})") from None
            folder = PurePosixPath(plain_name(PurePosixPath(name).stem))
            for m in members:
                path = None if m.is_dir() or (m.external_attr >> 28) == 0xA else _member_path(m.filename)
                if path is None:
                    if not m.is_dir():
                        left_out.append(f"{plain_name(name)}:{m.filename} (not an image, hidden, or a link)")
                    continue
                unpacked += m.file_size
                out.append((folder / path, (archive, m)))
        elif Path(str(name)).suffix.lower() in IMAGE_EXTENSIONS:
            out.append((PurePosixPath(plain_name(name)), data))
        else:
            left_out.append(f"{plain_name(name)} (not an image or a zip archive)")
    if unpacked > MAX_UNPACKED_BYTES:
        raise UploadError(f"the archives unpack to {unpacked / 2**30:.1f} GiB; at most "
                          f"{MAX_UNPACKED_BYTES / 2**30:.0f} GiB")
    if len(out) > MAX_FILES:
        raise UploadError(f"{len(out)} images in one upload; at most {MAX_FILES}")
    return out, left_out


def save_uploads(project: Project, files: Sequence[tuple[str, bytes]], *, progress=None) -> tuple[Path, list[str]]:
    """Write uploaded images (and the images inside uploaded zip archives) into a new
    ``uploads/<YYYYmmdd-HHMMSS>/`` folder of the project; returns the folder and what was left out.

    Raises
    ------
    UploadError
        Nothing to import, an upload too large, an archive that would unpack too large or is unreadable.
    """
    plan, left_out = _plan(files)
    if not plan:
        raise UploadError("no image in the upload (png, jpg, webp, bmp, gif, tif, or a zip of them)")
    root = project.root / UPLOADS / time.strftime("%Y%m%d-%H%M%S")
    dest = root
    k = 1
    while dest.exists():
        k += 1
        dest = root.with_name(f"{root.name}-{k}")
    taken: set[PurePosixPath] = set()
    for done, (rel, source) in enumerate(plan, start=1):
        while rel in taken:  # two uploads of one name: the second gets a number
            rel = rel.with_name(f"{rel.stem}-{done}{rel.suffix}")
        taken.add(rel)
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(source, tuple):
            archive, member = source
            with archive.open(member) as src, open(target, "wb") as fh:
                fh.write(src.read(MAX_UNPACKED_BYTES))
        else:
            target.write_bytes(source)
        if progress is not None:
            progress(done, len(plan))
    return dest, left_out
