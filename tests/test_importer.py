"""Importing a folder full of bad files: each is skipped with its reason, nothing else is lost."""
from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from labeling.importer import import_folder, import_manifest
from labeling.project import Project
from storage import items as items_q


def _bomb_png(width: int, height: int) -> bytes:
    """A real PNG whose header claims ``width x height`` pixels (CRC fixed)."""
    import io
    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def _bad_folder(root: Path) -> tuple[Path, set[str], set[str]]:
    src = root / "incoming"
    src.mkdir(parents=True)
    good = set()
    rng = np.random.default_rng(0)
    for k in range(4):
        Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(src / f"good {k} ünï.png")
        good.add(f"good {k} ünï.png")
    Image.new("CMYK", (16, 12), (10, 20, 30, 40)).save(src / "cmyk.jpg")
    Image.new("RGBA", (1, 1), (255, 0, 0, 128)).save(src / "one-pixel.png")
    good |= {"cmyk.jpg", "one-pixel.png"}
    full = (src / "good 0 ünï.png").read_bytes()
    (src / "truncated.png").write_bytes(full[: len(full) // 2])
    (src / "empty.jpg").write_bytes(b"")
    (src / "notes.png").write_text("this is text")
    (src / "random.webp").write_bytes(rng.integers(0, 255, 500, dtype=np.uint8).tobytes())
    (src / "bomb.png").write_bytes(_bomb_png(30_000, 30_000))
    outside = root.parent / "secret.png"
    Image.new("RGB", (5, 5)).save(outside)
    os.symlink(outside, src / "escape.png")
    bad = {"truncated.png", "empty.jpg", "notes.png", "random.webp", "bomb.png", "escape.png"}
    return src, good, bad


def test_every_bad_file_is_skipped_with_a_reason_and_good_ones_survive(tmp_path):
    root = tmp_path / "project"
    src, good, bad = _bad_folder(root)
    project = Project(root, create=True)
    summary = import_folder(project, src, progress=False)
    skipped = {Path(p).name: reason for p, reason in summary.skipped}
    assert set(skipped) == bad
    assert all(reason for reason in skipped.values())
    assert "too large" in skipped["bomb.png"] and "leaves the project root" in skipped["escape.png"]
    assert summary.added == len(good)
    with project.db.session() as con:
        ids, uris = items_q.ok_items(con)
        recorded = {Path(u).name: (s, r) for u, s, r in items_q.skipped_items(con)}
    assert {Path(u).name for u in uris} == good
    # unreadable files are remembered with their reason, so the project can report them later
    assert {"truncated.png", "empty.jpg", "notes.png", "random.webp", "bomb.png"} <= set(recorded)
    # thumbnails exist for every good item and stay small
    with project.db.session() as con:
        info = items_q.items_by_ids(con, ids)
    for it in info.values():
        thumb = project.thumb_path(it["sha256"])
        assert thumb.exists() and thumb.stat().st_size <= 20_000


def test_a_fixed_file_is_picked_up_on_reimport(tmp_path):
    root = tmp_path / "project"
    src, good, _ = _bad_folder(root)
    project = Project(root, create=True)
    import_folder(project, src, progress=False)
    Image.new("RGB", (8, 8), "blue").save(src / "truncated.png")  # the user replaced the broken file
    again = import_folder(project, src, progress=False)
    assert again.added == 1 and again.already_present == len(good)


def test_manifest_import_with_labels_and_problems(tmp_path):
    root = tmp_path / "project"
    src, good, _ = _bad_folder(root)
    project = Project(root, create=True)
    manifest = root / "m.csv"
    manifest.write_text(
        "path,label,extra\n"
        "incoming/good 0 ünï.png,<script>alert(1)</script>,x\n"
        "incoming/good 1 ünï.png,'; DROP TABLE items; --,y\n"
        "incoming/missing.png,cat,z\n"
        "incoming/good 1 ünï.png,'; DROP TABLE items; --,y\n", encoding="utf-8")
    summary = import_manifest(project, manifest, progress=False)
    assert summary.added == 2 and summary.labels == 2
    assert sorted(summary.new_classes) == sorted(["<script>alert(1)</script>", "'; DROP TABLE items; --"])
    text = " ".join(summary.problems)
    assert "missing.png" in text and "extra" in text
