"""Importing a folder full of bad files: each is skipped with its reason, nothing else is lost."""
from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from labeling.data.importer import import_folder, import_manifest
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


def test_manifest_labels_for_images_already_imported(tmp_path):
    from labeling.service import LabelingService
    from storage import labels as labels_q

    root = tmp_path / "project"
    src, good, _ = _bad_folder(root)
    project = Project(root, create=True)
    import_folder(project, src, progress=False)  # no labels yet
    names = sorted(good)
    service = LabelingService(root)
    ids = {uri: service.item_id_for_uri(uri) for uri in (f"incoming/{n}" for n in names)}
    first, second, third = (f"incoming/{n}" for n in names[:3])
    service.label([ids[second]], "dog", user="ann")  # a person's label, before the manifest
    service.label([ids[third]], None, user="ann")  # a person's skip
    manifest = root / "m.csv"
    manifest.write_text(f"path,label\n{first},cat\n{second},cat\n{third},cat\n", encoding="utf-8")
    summary = import_manifest(project, manifest, progress=False)
    assert summary.added == 0 and summary.already_present == 3 and summary.labels == 1
    assert summary.new_classes == ["cat"]
    with project.db.session() as con:
        class_names = dict(labels_q.classes(con))
        state = {int(r[0]): (class_names.get(r[1]), r[2], r[4]) for r in labels_q.current_state(con)}
    assert state[ids[first]] == ("cat", "label", "import")  # applied: it had no label
    assert state[ids[second]] == ("dog", "label", "manual")  # the person's label is kept ...
    assert state[ids[third]][1] == "skip"
    text = "\n".join(summary.problems)  # ... and the difference is reported
    assert f"{second}: already labeled 'dog'" in text and f"{third}: already skipped" in text
    again = import_manifest(project, manifest, progress=False)  # the same file again changes nothing
    assert again.labels == 0 and len(again.problems) == 2


# ------------------------------------------------------------------ one-pass probe + thumbnail


def _sample_files(folder: Path) -> list[Path]:
    """Good images of many kinds (EXIF rotation, CMYK, alpha, 16-bit, palette, big enough to shrink) and
    broken ones (empty, text, truncated, bombs, mangled bytes of every format)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(3)

    def noise(w, h):
        return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")

    exif = Image.Exif()
    exif[0x0112] = 6
    noise(40, 20).save(folder / "rot.jpg", quality=95, exif=exif)
    noise(300, 200).save(folder / "big.jpg", quality=90)
    noise(300, 180).save(folder / "big.png")
    noise(600, 40).save(folder / "wide.webp")
    Image.new("CMYK", (16, 12), (10, 20, 30, 40)).save(folder / "cmyk.jpg")
    Image.new("RGBA", (9, 7), (255, 0, 0, 128)).save(folder / "alpha.png")
    Image.fromarray(rng.integers(0, 65535, (20, 30), dtype=np.uint16)).save(folder / "deep.png")
    noise(30, 30).convert("P").save(folder / "pal.gif")
    noise(17, 23).save(folder / "plain.bmp")
    noise(25, 25).save(folder / "plain.tif")
    noise(1, 1).save(folder / "dot.png")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.png").write_text("not a picture")
    (folder / "bomb.png").write_bytes(_bomb_png(30_000, 30_000))
    for kind in ("PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF"):
        buf = io.BytesIO()
        noise(24, 16).save(buf, kind)
        data = buf.getvalue()
        (folder / f"cut.{kind.lower()}").write_bytes(data[: len(data) // 2])
        for seed in range(6):
            r = np.random.default_rng(seed)
            mangled = bytearray(data)
            for i in r.integers(0, len(mangled), size=int(r.integers(1, 6))):
                mangled[i] = int(r.integers(0, 256))
            keep = int(r.integers(1, len(mangled) + 1)) if seed < 3 else len(mangled)  # some stay decodable
            (folder / f"fuzz{seed}.{kind.lower()}").write_bytes(bytes(mangled[:keep]))
    return sorted(folder.iterdir())


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow's warnings about the mangled TIFFs
def test_one_pass_probe_and_thumbnail_match_the_two_calls(tmp_path):
    from labeling.data.images import probe_image
    from labeling.data.thumbnails import make_thumbnail, probe_and_thumbnail

    files = _sample_files(tmp_path / "in")
    assert len(files) > 40
    for path in files:
        expected = probe_image(path)
        two_calls, one_pass = tmp_path / "a" / f"{path.name}.jpg", tmp_path / "b" / f"{path.name}.jpg"
        problem = None
        if expected.ok:
            try:
                make_thumbnail(path, two_calls)
            except (ValueError, OSError) as exc:
                problem = f"thumbnail failed: {exc}"
        got = probe_and_thumbnail(path, lambda sha: one_pass)
        assert got == (expected, problem), path.name
        assert one_pass.exists() == two_calls.exists(), path.name
        if two_calls.exists():
            assert one_pass.read_bytes() == two_calls.read_bytes(), path.name
    # an up-to-date thumbnail is left alone, as make_thumbnail leaves it
    path = tmp_path / "in" / "big.png"
    dst = tmp_path / "b" / "big.png.jpg"
    before = dst.stat().st_mtime_ns
    assert probe_and_thumbnail(path, dst)[1] is None and dst.stat().st_mtime_ns == before


def test_relative_uris_match_relative_uri(tmp_path):
    from labeling.data.scan import relative_uri, relative_uris

    root = tmp_path / "root"
    (root / "a b").mkdir(parents=True)
    (root / "real").mkdir()
    os.symlink(root / "real", root / "alias")
    os.symlink(root, tmp_path / "root-link")
    paths = [root / "a b" / "ç 1.png", root / "x.png", tmp_path / "x.png", root / ".." / "x.png", root,
             root / "alias" / "p.png", tmp_path / "root-link" / "q.png", str(root / "a b" / "." / "y.png"),
             root / "a b" / ".." / "z.png"]
    for base in (root, tmp_path / "root-link", str(root)):
        want = []
        for p in paths:
            try:
                want.append(relative_uri(base, p))
            except ValueError:
                want.append(None)
        assert relative_uris(base, paths) == want


def test_import_records_ids_in_file_order_and_thumbnails_once(tmp_path):
    root = tmp_path / "project"
    src = root / "images"
    src.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for k in range(600):  # three chunks
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(src / f"im{k:04d}.png")
    Image.open(src / "im0003.png").save(src / "same.png")  # identical content: a duplicate
    project = Project(root, create=True)
    summary = import_folder(project, src, progress=False)
    assert summary.added == 600 and [Path(u).name for u, _ in summary.duplicates] == ["same.png"]
    with project.db.session() as con:
        ids, uris = items_q.ok_items(con)
        info = items_q.items_by_ids(con, ids)
    assert [Path(u).name for u in uris] == [f"im{k:04d}.png" for k in range(600)]
    assert all((info[i]["width"], info[i]["height"]) == (8, 8) for i in ids.tolist())
    assert len(list((project.data_dir / "thumbs").rglob("*.jpg"))) == 600
    again = import_folder(project, src, progress=False)
    assert again.added == 0 and again.already_present == 600
