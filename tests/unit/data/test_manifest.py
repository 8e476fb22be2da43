"""Tests for labeling.data.manifest: CSV, TSV and Parquet manifests written by the tests."""
from __future__ import annotations

import pickle
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from labeling.data.manifest import Manifest, ManifestError, ManifestRow, read_manifest

NASTY_LABELS = [
    "'; DROP TABLE items; --",
    "<script>alert(1)</script>",
    'say "cheese", please',
    "=HYPERLINK(\"http://x\")",
    "../../etc/passwd",
    "猫 🐈",
]


@pytest.fixture
def root(tmp_path) -> Path:
    """A project root holding a few (empty) image files; the manifest reader does not decode them."""
    root = tmp_path / "project"
    for name in ["a.jpg", "b.png", "sub/c.jpg", "with space/ünï cödé.png", "d.jpg", "e.jpg", "f.jpg"]:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")
    (tmp_path / "outside.jpg").write_bytes(b"x")
    return root


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _rows(manifest: Manifest, root: Path) -> list[tuple[str, str | None, int]]:
    return [(r.path.relative_to(root).as_posix(), r.label, r.line) for r in manifest.rows]


def test_csv_rows_labels_and_line_numbers(root):
    path = _write(root / "m.csv", "path,label\na.jpg,cat\nb.png, dog \nsub/c.jpg,\n")
    manifest = read_manifest(path, root=root)
    assert _rows(manifest, root) == [("a.jpg", "cat", 2), ("b.png", "dog", 3), ("sub/c.jpg", None, 4)]
    assert manifest.problems == []
    assert all(isinstance(r, ManifestRow) and r.path.is_absolute() for r in manifest.rows)


@pytest.mark.parametrize("path_col", ["path", "uri", "file", "filename", "image", "Path", " FILE "])
@pytest.mark.parametrize("label_col", ["label", "class", "category", "Label"])
def test_column_aliases(root, path_col, label_col):
    path = _write(root / "m.csv", f"{path_col},{label_col}\na.jpg,cat\n")
    assert _rows(read_manifest(path, root=root), root) == [("a.jpg", "cat", 2)]


def test_label_column_is_optional(root):
    path = _write(root / "m.csv", "image\na.jpg\nb.png\n")
    assert _rows(read_manifest(path, root=root), root) == [("a.jpg", None, 2), ("b.png", None, 3)]


def test_unknown_columns_are_listed_once(root):
    path = _write(root / "m.csv", "id,path,score,label\n1,a.jpg,0.5,cat\n2,b.png,0.7,dog\n")
    manifest = read_manifest(path, root=root)
    assert _rows(manifest, root) == [("a.jpg", "cat", 2), ("b.png", "dog", 3)]
    assert manifest.problems == ["ignored columns: 'id', 'score'"]


def test_paths_resolve_against_the_manifest_folder(root):
    path = _write(root / "sub" / "m.csv", "path,label\nc.jpg,x\n../a.jpg,y\n")
    manifest = read_manifest(path, root=root)
    assert _rows(manifest, root) == [("sub/c.jpg", "x", 2), ("a.jpg", "y", 3)]


def test_absolute_paths_inside_root_are_accepted(root):
    path = _write(root / "m.csv", f"path\n{root / 'b.png'}\n")
    assert _rows(read_manifest(path, root=root), root) == [("b.png", None, 2)]


def test_missing_files_are_problems_with_line_numbers(root):
    path = _write(root / "m.csv", "path,label\na.jpg,cat\nmissing.jpg,dog\nsub,dir\n")
    manifest = read_manifest(path, root=root)
    assert _rows(manifest, root) == [("a.jpg", "cat", 2)]
    assert manifest.problems == ["line 3: file not found: 'missing.jpg'", "line 4: not a file: 'sub'"]


def test_paths_outside_root_are_not_read(root, tmp_path):
    (root / "escape.jpg").symlink_to(tmp_path / "outside.jpg")
    text = f"path\n../outside.jpg\n{tmp_path / 'outside.jpg'}\nescape.jpg\nsub/../../outside.jpg\na.jpg\n"
    manifest = read_manifest(_write(root / "m.csv", text), root=root)
    assert _rows(manifest, root) == [("a.jpg", None, 6)]
    assert len(manifest.problems) == 4
    for line, problem in zip([2, 3, 4, 5], manifest.problems):
        assert problem.startswith(f"line {line}: ") and problem.endswith("is outside the project root, not read")


def test_manifest_outside_root_may_list_files_inside(root, tmp_path):
    path = _write(tmp_path / "lists" / "m.csv", f"path,label\n{root / 'a.jpg'},cat\n../outside.jpg,dog\n")
    manifest = read_manifest(path, root=root)
    assert _rows(manifest, root) == [("a.jpg", "cat", 2)]
    assert manifest.problems == ["line 3: '../outside.jpg' is outside the project root, not read"]


def test_duplicates_are_kept_once(root):
    text = "path,label\na.jpg,cat\n./a.jpg,cat\nb.png,dog\nb.png,cat\nd.jpg,\nd.jpg,bird\n"
    manifest = read_manifest(_write(root / "m.csv", text), root=root)
    assert _rows(manifest, root) == [("a.jpg", "cat", 2), ("b.png", "dog", 4), ("d.jpg", None, 6)]
    assert manifest.problems == [
        "line 3: './a.jpg' repeats line 2, ignored",
        "line 5: 'b.png' is labelled 'cat' here but 'dog' on line 4; keeping 'dog'",
        "line 7: 'd.jpg' is labelled 'bird' here but no label on line 6; keeping no label",
    ]


def test_malicious_class_names_are_kept_verbatim(root):
    files = ["a.jpg", "b.png", "d.jpg", "e.jpg", "f.jpg", "sub/c.jpg"]
    lines = ["path,label"] + [f'{f},"{label.replace(chr(34), chr(34) * 2)}"' for f, label in zip(files, NASTY_LABELS)]
    manifest = read_manifest(_write(root / "m.csv", "\n".join(lines) + "\n"), root=root)
    assert [r.label for r in manifest.rows] == NASTY_LABELS
    assert manifest.problems == []


def test_quoted_multiline_label_keeps_line_numbers(root):
    text = 'path,label\na.jpg,"two\nlines"\n\nb.png,dog\n'
    manifest = read_manifest(_write(root / "m.csv", text), root=root)
    assert _rows(manifest, root) == [("a.jpg", "two\nlines", 2), ("b.png", "dog", 5)]


def test_unicode_and_spaces_in_paths_and_bom(root):
    text = "\ufeffpath,label\nwith space/ünï cödé.png,chat noir\n"
    manifest = read_manifest(_write(root / "m.csv", text), root=root)
    assert _rows(manifest, root) == [("with space/ünï cödé.png", "chat noir", 2)]


def test_empty_path_and_extra_fields(root):
    text = "path,label\n,cat\na.jpg,cat,dog\n"
    manifest = read_manifest(_write(root / "m.csv", text), root=root)
    assert _rows(manifest, root) == [("a.jpg", "cat", 3)]
    assert manifest.problems == [
        "line 2: empty path",
        "line 3: 3 fields but the header has 2; extra fields ignored",
    ]


def test_tsv(root):
    path = _write(root / "m.TSV", "file\tclass\na.jpg\tcat, big\nb.png\tdog\n")
    assert _rows(read_manifest(path, root=root), root) == [("a.jpg", "cat, big", 2), ("b.png", "dog", 3)]


def test_parquet(root):
    table = pa.table(
        {
            "Image": ["a.jpg", "b.png", "missing.jpg", "sub/c.jpg", "a.jpg"],
            "category": [0, None, 2, 3, 1],
            "score": [0.1, 0.2, 0.3, 0.4, 0.5],
        }
    )
    path = root / "m.parquet"
    pq.write_table(table, path)
    manifest = read_manifest(path, root=root)
    assert _rows(manifest, root) == [("a.jpg", "0", 1), ("b.png", None, 2), ("sub/c.jpg", "3", 4)]
    assert manifest.problems == [
        "ignored columns: 'score'",
        "row 3: file not found: 'missing.jpg'",
        "row 5: 'a.jpg' is labelled '1' here but '0' on row 1; keeping '0'",
    ]


def test_parquet_keeps_malicious_labels(root):
    files = ["a.jpg", "b.png", "d.jpg", "e.jpg", "f.jpg", "sub/c.jpg"]
    path = root / "m.parquet"
    pq.write_table(pa.table({"path": files, "label": NASTY_LABELS}), path)
    assert [r.label for r in read_manifest(path, root=root).rows] == NASTY_LABELS


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.csv", "", "empty manifest: no header row"),
        ("blank.csv", "\n\n", "empty manifest: no header row"),
        ("noheader.csv", "a.jpg,cat\nb.png,dog\n", "no path column.*is the header row missing"),
        ("nopath.csv", "name,label\na.jpg,cat\n", "no path column: expected one of path, uri"),
        ("binary.csv", b"\x89PNG\r\n\x1a\n\xff\xfe\x00\x00garbage", "not a UTF-8 text file"),
        ("quotes.csv", 'path,label\n"a.jpg"x,cat\n', "malformed CSV near line 2"),
        ("notparquet.parquet", "path,label\na.jpg,cat\n", "not a readable Parquet file"),
        ("m.json", '{"path": "a.jpg"}', "unsupported manifest type '.json'"),
        ("m", "path\na.jpg\n", "unsupported manifest type '\\(none\\)'"),
    ],
)
def test_malformed_manifests_raise(root, name, content, message):
    path = root / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        _write(path, content)
    with pytest.raises(ManifestError, match=message) as info:
        read_manifest(path, root=root)
    assert isinstance(info.value, ValueError)
    assert "\n" not in str(info.value) and str(info.value).startswith(str(path))


@pytest.mark.parametrize("name", ["nope.csv", "nope.parquet"])
def test_missing_manifest_raises(root, name):
    with pytest.raises(ManifestError, match="cannot read manifest: no such file"):
        read_manifest(root / name, root=root)


def test_folder_named_like_a_manifest_raises(root):
    (root / "dir.csv").mkdir()
    with pytest.raises(ManifestError, match="cannot read manifest: it is a folder"):
        read_manifest(root / "dir.csv", root=root)


def test_nul_character_in_a_path_is_a_row_problem(root):
    manifest = read_manifest(_write(root / "m.csv", "path\na.jpg\x00\nb.png\n"), root=root)
    assert _rows(manifest, root) == [("b.png", None, 3)]
    assert manifest.problems == ["line 2: invalid path 'a.jpg\\x00'"]


def test_manifest_error_is_picklable(root):
    err = ManifestError(root / "m.csv", "empty manifest: no header row")
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.path, copy.reason, str(copy)) == (err.path, err.reason, str(err))


def test_paths_through_another_name_for_the_root(root, tmp_path):
    alias = tmp_path / "alias"
    alias.symlink_to(root, target_is_directory=True)
    path = _write(tmp_path / "m.csv", f"path\n{alias / 'a.jpg'}\n")
    manifest = read_manifest(path, root=root)
    assert [r.path for r in manifest.rows] == [root / "a.jpg"]
    assert manifest.problems == []
