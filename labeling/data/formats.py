"""Label exchange with other tools: reading label files back into a project.

Export (see :func:`labeling.data.export.export`): ``coco`` writes one COCO-style classification JSON; ``hf``
writes a folder with the images (copied or linked) and a ``metadata.jsonl`` that
``datasets.load_dataset("imagefolder", data_dir=...)`` reads, one line per image with ``file_name``,
``label`` and the provenance columns; ``imagefolder`` writes one folder per class.

Import (:func:`read_labels` then :func:`import_labels`): CSV/TSV, JSONL, Parquet, COCO JSON, a Hugging
Face ``metadata.jsonl`` (or ``metadata.csv``), and an ImageFolder tree (labels from the class folders).
Each row names its item by ``item_id``, by ``uri`` (the path inside the project), or by ``file_name``
(also read from a ``path``, ``file``, ``filename`` or ``image`` column; the label from ``label``,
``class`` or ``category``). A row is matched, in this order, by its uri; by a file name that leads to
an image of the project; by content (the file, which must lie inside the label file's folder, is hashed
and found among the project's images); by a file name found exactly once in the project. So labels
exported from one project import into another built from the same images. Labels imported keep the
source ``import``.

Reading is forgiving about rows and strict about the file: a file that cannot be read as the format
raises :class:`LabelFileError`; each row that cannot be used (no matching image, a path that leaves
the label file's folder, a repeated image, a label that is not text) is left out with one message that
names its line (row, annotation), and the others are imported. Columns that are neither a path, a
label, an item id nor one of Quorum's export columns are named once.
"""
from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from labeling.data.export import PROVENANCE
from labeling.data.manifest import ManifestError, _iter_delimited, _one_line
from labeling.data.matching import LabelFileError, resolve_rows
from labeling.data.foreign import FOREIGN_FORMATS, ForeignFormatError, read_foreign, read_tree, sniff

LABEL_FORMATS = ("csv", "jsonl", "parquet", "coco", "hf", "imagefolder", *FOREIGN_FORMATS)

PATH_ALIASES = ("file_name", "path", "file", "filename", "image")
"""Columns read as ``file_name`` (the first one present, case-insensitive)."""

LABEL_ALIASES = ("label", "class", "category")
"""Columns read as the label (the first one present, case-insensitive)."""

EXPORT_COLUMNS = frozenset({"status", "event_id", "pseudo_label", "confidence", "round_id", *PROVENANCE})
"""Columns of Quorum's own exports that are provenance, not input: read without a message, not imported."""

HF_METADATA = ("metadata.jsonl", "metadata.csv")

_COCO_KEYS = frozenset({"info", "licenses", "images", "categories", "annotations"})
_COCO_IMAGE_KEYS = frozenset({"id", "file_name", "uri", "width", "height", "license", "flickr_url", "coco_url",
                              "date_captured", "pseudo_label", "confidence"})
_COCO_ANNOTATION_KEYS = frozenset({"id", "image_id", "category_id", "event_id", "bbox", "area", "iscrowd",
                                   *PROVENANCE})


def guess_format(path: Path) -> str:
    """The label format of ``path`` from its name (a folder: ``hf`` with a metadata file, else ``imagefolder``)."""
    if path.is_dir():
        return "hf" if any((path / name).is_file() for name in HF_METADATA) else "imagefolder"
    if path.name.lower() in HF_METADATA:
        return "hf"
    suffix = path.suffix.lower()
    if suffix == ".json":
        return "coco"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix in (".csv", ".tsv"):
        return "csv"
    raise LabelFileError(f"{path.name}: cannot tell the format from the name; pass --label-format "
                         f"({', '.join(LABEL_FORMATS)})")


def _label(value: object) -> tuple[str | None, bool]:
    """(the label as text or None when empty, whether the value could be read as a label)."""
    if value is None:
        return None, True
    if isinstance(value, bool) or isinstance(value, (list, dict, tuple)):
        return None, False
    if isinstance(value, float):
        if math.isnan(value):
            return None, True
        if value.is_integer():
            value = int(value)
    text = str(value).strip()
    return (text or None), True


def _text(value: object) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    return text or None


# ---- readers: (header, [(where, record dict)], problems) ------------------------------------------
def _read_delimited(path: Path) -> tuple[list[str], list[tuple[str, dict]], list[str]]:
    header: list[str] | None = None
    records: list[tuple[str, dict]] = []
    problems: list[str] = []
    try:
        for start, cells in _iter_delimited(path, "\t" if path.suffix.lower() == ".tsv" else ","):
            if header is None:
                header = cells
                continue
            if len(cells) > len(header):
                problems.append(f"line {start}: {len(cells)} fields but the header has {len(header)}; "
                                "extra fields ignored")
            records.append((f"line {start}", dict(zip(header, cells))))
    except ManifestError as exc:
        raise LabelFileError(f"{path.name}: {exc.reason}") from exc
    return header or [], records, problems


def _read_jsonl(path: Path) -> tuple[list[str], list[tuple[str, dict]], list[str]]:
    header: dict[str, None] = {}
    records: list[tuple[str, dict]] = []
    problems: list[str] = []
    try:
        with open(path, encoding="utf-8-sig") as fh:
            for k, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as exc:
                    problems.append(f"line {k}: not JSON ({exc.msg}), ignored")
                    continue
                if not isinstance(rec, dict):
                    problems.append(f"line {k}: not an object, ignored")
                    continue
                header.update(dict.fromkeys(map(str, rec)))
                records.append((f"line {k}", rec))
    except UnicodeDecodeError as exc:
        raise LabelFileError(f"{path.name}: not a UTF-8 text file") from exc
    return list(header), records, problems


def _read_parquet(path: Path) -> tuple[list[str], list[tuple[str, dict]], list[str]]:
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise LabelFileError(f"{path.name}: not a readable Parquet file: {_one_line(exc)}") from exc
    rows = table.to_pylist()
    return list(table.column_names), [(f"row {k}", rec) for k, rec in enumerate(rows, start=1)], []


def _coco_categories(categories_doc: list, problems: list[str]) -> dict[object, str]:
    """Category id -> name of the COCO ``categories`` list; a category without both, or repeating an
    id, is a problem."""
    categories: dict[object, str] = {}
    for k, cat in enumerate(categories_doc, start=1):
        name = _text(cat.get("name")) if isinstance(cat, dict) else None
        if name is None or cat.get("id") is None:
            problems.append(f"category {k}: needs an id and a name, ignored")
        elif cat["id"] in categories:
            problems.append(f"category {k}: id {cat['id']!r} repeats an earlier category, ignored")
        else:
            categories[cat["id"]] = name
    return categories


def _coco_images(images_doc: list, problems: list[str]) -> dict[object, dict]:
    """Image id -> image of the COCO ``images`` list; unusable images and unknown fields are problems."""
    images: dict[object, dict] = {}
    unknown: set[str] = set()
    for k, image in enumerate(images_doc, start=1):
        if not isinstance(image, dict) or image.get("id") is None or not (image.get("file_name") or image.get("uri")):
            problems.append(f"image {k}: needs an id and a file_name, ignored")
        elif image["id"] in images:
            problems.append(f"image {k}: id {image['id']!r} repeats an earlier image, ignored")
        else:
            images[image["id"]] = image
            unknown |= set(map(str, image)) - _COCO_IMAGE_KEYS
    if unknown:
        problems.append(f"ignored image fields: {', '.join(map(repr, sorted(unknown)))}")
    return images


def _coco_annotations(annotations: list, images: dict[object, dict], categories: dict[object, str],
                      problems: list[str]) -> list[dict]:
    """Rows of the COCO ``annotations`` whose image and category are known; the others are problems.

    Unknown annotation fields are named once, at the head of ``problems``.
    """
    rows: list[dict] = []
    unknown: set[str] = set()
    for k, ann in enumerate(annotations, start=1):
        where = f"annotation {k}"
        if not isinstance(ann, dict):
            problems.append(f"{where}: not an object, ignored")
            continue
        unknown |= set(map(str, ann)) - _COCO_ANNOTATION_KEYS
        image = images.get(ann.get("image_id"))
        if image is None:
            problems.append(f"{where}: image_id {ann.get('image_id')!r} is not among the images, ignored")
            continue
        label = categories.get(ann.get("category_id"))
        if label is None:
            problems.append(f"{where}: category_id {ann.get('category_id')!r} is not among the categories, ignored")
            continue
        rows.append({"item_id": None, "uri": _text(image.get("uri")), "file_name": _text(image.get("file_name")),
                     "label": label, "where": where, "annotator": _text(ann.get("annotator")),
                     "created_at": ann.get("created_at")})
    if unknown:
        problems.insert(0, f"ignored annotation fields: {', '.join(map(repr, sorted(unknown)))}")
    return rows


def _read_coco(path: Path) -> tuple[list[dict], list[str]]:
    shape = "it needs 'images', 'categories' and 'annotations' lists"
    try:
        doc = json.loads(path.read_text(encoding="utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LabelFileError(f"{path.name}: not a COCO-style classification file ({_one_line(exc)}); {shape}") from exc
    if not isinstance(doc, dict) or not all(isinstance(doc.get(k), list)
                                            for k in ("images", "categories", "annotations")):
        raise LabelFileError(f"{path.name}: not a COCO-style classification file; {shape}")
    problems: list[str] = []
    extra = sorted(set(map(str, doc)) - _COCO_KEYS)
    if extra:
        problems.append(f"ignored keys: {', '.join(map(repr, extra))}")
    categories = _coco_categories(doc["categories"], problems)
    images = _coco_images(doc["images"], problems)
    rows = _coco_annotations(doc["annotations"], images, categories, problems)
    return rows, problems


def _pick(header: dict[str, str], aliases: Iterable[str]) -> str | None:
    return next((header[a] for a in aliases if a in header), None)


def _read_table(path: Path, fmt: str) -> tuple[list[str], list[tuple[str, dict]], list[str]]:
    """(header, [(where, record)], problems) of a CSV/TSV, JSONL or Parquet file (``hf``: by its suffix)."""
    kind = {"csv": "csv", "jsonl": "jsonl", "parquet": "parquet"}.get(fmt)
    if kind is None:  # hf: metadata.jsonl, or metadata.csv
        kind = "csv" if path.suffix.lower() in (".csv", ".tsv") else "jsonl"
    reader = {"csv": _read_delimited, "jsonl": _read_jsonl, "parquet": _read_parquet}[kind]
    try:
        return reader(path)
    except OSError as exc:
        raise LabelFileError(f"{path.name}: cannot be read: {exc.strerror or _one_line(exc)}") from exc


def _table_columns(path: Path, header: list[str]) -> tuple[str | None, str | None, str | None, str]:
    """The item id, uri, file name and label columns as written (each None when absent but the label).

    Raises :class:`LabelFileError` without a label column, or without any column naming the item.
    """
    names = {}
    for col in header:  # normalised name -> the column as written; the first of equal names wins
        names.setdefault(str(col).strip().lower(), col)
    id_col, uri_col = names.get("item_id"), names.get("uri")
    file_col, label_col = _pick(names, PATH_ALIASES), _pick(names, LABEL_ALIASES)
    if label_col is None or (id_col is None and uri_col is None and file_col is None):
        raise LabelFileError(f"{path.name}: needs a 'label' column and one of 'item_id', 'uri', 'file_name' "
                             f"(or {', '.join(repr(a) for a in PATH_ALIASES[1:])}); "
                             f"found {sorted(map(str, header))}")
    return id_col, uri_col, file_col, label_col


def _table_rows(path: Path, fmt: str) -> tuple[list[dict], list[str]]:
    header, records, problems = _read_table(path, fmt)
    id_col, uri_col, file_col, label_col = _table_columns(path, header)
    ann_col = next((c for c in header if str(c).strip().lower() == "annotator"), None)  # whose label it was
    time_col = next((c for c in header if str(c).strip().lower() == "created_at"), None)  # and when
    used = {id_col, uri_col, file_col, label_col, ann_col, time_col}
    ignored = [str(c) for c in header if c not in used and str(c).strip().lower() not in EXPORT_COLUMNS
               and str(c).strip()]
    if ignored:
        problems.insert(0, f"ignored columns: {', '.join(map(repr, ignored))}")
    rows = []
    for where, rec in records:
        label, ok = _label(rec.get(label_col))
        if not ok:
            problems.append(f"{where}: the label {rec.get(label_col)!r} is not text, row ignored")
            continue
        rows.append({"item_id": _cell(rec, id_col), "uri": _cell(rec, uri_col), "file_name": _cell(rec, file_col),
                     "label": label, "where": where, "annotator": _cell(rec, ann_col),
                     "created_at": rec.get(time_col) if time_col else None})
    return rows, sorted(problems, key=_line_of)


def _cell(rec: dict, col: str | None) -> str | None:
    """The text of column ``col`` of a record; None when empty or without such a column."""
    return _text(rec.get(col)) if col else None


def _line_of(problem: str) -> int:
    """The line (row) a problem names, for listing problems in file order; 0 for the file as a whole."""
    head = problem.split(":", 1)[0].split()
    return int(head[1]) if len(head) == 2 and head[0] in ("line", "row") and head[1].isdigit() else 0


def read_labels(path: str | Path, fmt: str = "auto") -> tuple[list[dict], list[str], Path]:
    """Read a label file.

    Returns
    -------
    (rows, problems, base)
        ``rows``: dicts with ``item_id``, ``uri``, ``file_name``, ``label`` (each None when absent) and
        ``where`` (``"line 7"``, ``"row 3"``, ``"annotation 2"`` or a path in a tree); ``problems``: one
        line each; ``base``: the folder that file names are relative to (and the only folder whose
        files are read).

    Raises
    ------
    LabelFileError
        No such file, an unknown format, or a file that cannot be read as its format.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise LabelFileError(f"{path}: no such file or folder")
    try:
        fmt = (sniff(path) or guess_format(path)) if fmt == "auto" else fmt  # by content first, then by name
        if fmt in FOREIGN_FORMATS:
            return read_foreign(path, fmt)
    except (ForeignFormatError, OSError) as exc:
        raise LabelFileError(str(exc)) from None
    if fmt not in LABEL_FORMATS:
        raise LabelFileError(f"unknown label format {fmt!r}; valid: {', '.join(LABEL_FORMATS)}")
    if fmt == "imagefolder":
        if not path.is_dir():
            raise LabelFileError(f"{path}: an imagefolder is a folder of class folders")
        return (*read_tree(path), path)
    if path.is_dir():
        if fmt != "hf":
            raise LabelFileError(f"{path}: is a folder, not a {fmt} file")
        found = next((path / name for name in HF_METADATA if (path / name).is_file()), None)
        if found is None:
            raise LabelFileError(f"{path}: no {' or '.join(HF_METADATA)} in this folder")
        path = found
    if fmt == "coco":
        return (*_read_coco(path), path.parent)
    return (*_table_rows(path, fmt), path.parent)


def import_labels(service, path: str | Path, *, fmt: str = "auto", user: str = "import") -> dict:
    """Apply a label file to a project; labels keep the source ``import``.

    Returns ``labeled`` (labels written), ``rows`` (rows read) and ``problems`` (one line each).
    A label of a matched row that cannot be a class name refuses the whole file
    (:class:`LabelFileError`, naming its row) before anything is written.
    """
    rows, problems, base = read_labels(path, fmt)
    resolved, more = resolve_rows(service.project, rows, base, source=Path(path).name)
    by_person: dict[str, list[dict]] = {}  # each row under its own annotator, ``user`` where it names none
    for row in resolved:  # each row keeps its own time too (created_at, when the file has it)
        by_person.setdefault(row.pop("annotator") or user, []).append(row)
    result = {"labeled": 0, "problems": []}
    for person, person_rows in by_person.items():
        done = service.label_table(person_rows, user=person, source="import")
        result.update(done, labeled=result["labeled"] + done["labeled"], problems=result["problems"] + done["problems"])
    result["problems"] = problems + more + result["problems"]
    result["rows"] = len(rows)
    return result
