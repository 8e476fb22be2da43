"""Label exchange with other tools: COCO-style classification JSON and Hugging Face ``imagefolder`` metadata.

Export (see :func:`labeling.export.export`): ``coco`` writes one JSON file; ``hf`` writes a folder with the
images (copied or linked) and a ``metadata.jsonl`` that ``datasets.load_dataset("imagefolder", data_dir=...)``
reads, one line per image with ``file_name``, ``label`` and the provenance columns.

Import (:func:`read_labels` then :func:`import_labels`): CSV, JSONL, Parquet, COCO and ``metadata.jsonl``.
Each row names its item by ``item_id``, by ``uri`` (the path inside the project), or by ``file_name``; a
file name that is not a project uri is matched by content: the file beside the manifest is hashed and found
among the project's images; failing both, a file name found exactly once in the project matches. So labels
exported from one project import into another built from the same images. Labels imported keep the source ``import``.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from labeling.images import _hash_file
from labeling.project import Project
from storage import items as items_q

LABEL_FORMATS = ("csv", "jsonl", "parquet", "coco", "hf")


class LabelFileError(ValueError):
    """A label file that cannot be read as the format asked."""


def guess_format(path: Path) -> str:
    if path.is_dir() or path.name == "metadata.jsonl":
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
    raise LabelFileError(f"{path.name}: cannot tell the format from the name; pass --format "
                         f"({', '.join(LABEL_FORMATS)})")


def read_labels(path: str | Path, fmt: str = "auto") -> tuple[list[dict], list[str], Path]:
    """(rows with item_id/uri/file_name and label, problems, the folder file names are relative to)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise LabelFileError(f"{path}: no such file or folder")
    fmt = guess_format(path) if fmt == "auto" else fmt
    if fmt not in LABEL_FORMATS:
        raise LabelFileError(f"unknown label format {fmt!r}; valid: {', '.join(LABEL_FORMATS)}")
    if fmt == "hf" and path.is_dir():
        path = path / "metadata.jsonl"
        if not path.exists():
            raise LabelFileError(f"{path.parent}: no metadata.jsonl in this folder")
    base = path.parent
    problems: list[str] = []
    if fmt == "coco":
        return (*_read_coco(path), base)
    try:
        if fmt == "csv":
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, sep="\t" if path.suffix == ".tsv" else ",")
        elif fmt == "parquet":
            frame = pd.read_parquet(path)
        else:  # jsonl, hf
            records = []
            with open(path, encoding="utf-8") as fh:
                for k, line in enumerate(fh, start=1):
                    if not line.strip():
                        continue
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError as exc:
                        problems.append(f"line {k}: not JSON ({exc.msg})")
                        continue
                    if not isinstance(rec, dict):
                        problems.append(f"line {k}: not an object")
                        continue
                    records.append(rec)
            frame = pd.DataFrame(records)
    except (OSError, ValueError) as exc:
        raise LabelFileError(f"{path.name}: cannot be read as {fmt}: {exc}") from exc
    if "label" not in frame.columns or not set(frame.columns) & {"item_id", "uri", "file_name"}:
        raise LabelFileError(f"{path.name}: needs a 'label' column and one of 'item_id', 'uri', 'file_name'; "
                             f"found {sorted(map(str, frame.columns))}")
    rows = []
    for rec in frame.to_dict(orient="records"):
        rows.append({k: (None if _missing(rec.get(k)) else rec.get(k)) for k in ("item_id", "uri", "file_name", "label")})
    return rows, problems, base


def _missing(v) -> bool:
    return v is None or v == "" or (isinstance(v, float) and v != v)


def _read_coco(path: Path) -> tuple[list[dict], list[str]]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        images = {int(im["id"]): im for im in doc["images"]}
        categories = {int(c["id"]): str(c["name"]) for c in doc["categories"]}
        annotations = doc["annotations"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LabelFileError(f"{path.name}: not a COCO-style classification file ({type(exc).__name__}: {exc}); "
                             "it needs 'images', 'categories' and 'annotations'") from exc
    rows, problems = [], []
    for k, ann in enumerate(annotations):
        try:
            image = images[int(ann["image_id"])]
            label = categories[int(ann["category_id"])]
        except (KeyError, TypeError, ValueError):
            problems.append(f"annotation {k}: unknown image_id or category_id")
            continue
        rows.append({"item_id": None, "uri": image.get("uri"), "file_name": image.get("file_name"), "label": label})
    return rows, problems


def resolve_rows(project: Project, rows: list[dict], base: Path) -> tuple[list[dict], list[str]]:
    """Rows as ``{"item_id"|"uri", "label"}`` for ``LabelingService.label_table``; unmatched rows are problems."""
    with project.db.session() as con:
        uris = items_q.known_uris(con)
        by_hash = items_q.ids_by_hash(con)
    by_name: dict[str, list[int]] = {}
    for uri, (item_id, _, status) in uris.items():
        if status == "ok":
            by_name.setdefault(uri.rsplit("/", 1)[-1], []).append(item_id)
    base_resolved = base.resolve()
    out, problems, seen = [], [], {}
    for k, row in enumerate(rows, start=1):
        label = row.get("label")
        if label is None:  # an unlabeled row (exports list every item): nothing to import
            continue
        item = None
        named = row.get("uri") or row.get("file_name")
        if named is None:  # only an id: ids belong to one project, so this suits files from this project
            try:
                item = int(row["item_id"])
            except (TypeError, ValueError, KeyError):
                problems.append(f"row {k}: needs a uri, a file_name or an item_id")
                continue
        else:  # a path names the same image in any project: by path here, else by the file's content
            for key in ("uri", "file_name"):
                name = row.get(key)
                if name is not None and str(name) in uris:
                    item = uris[str(name)][0]
                    break
            if item is None and row.get("file_name"):
                candidate = (base / str(row["file_name"])).resolve()
                if not candidate.is_relative_to(base_resolved):
                    problems.append(f"row {k}: {row['file_name']!r} leaves the folder of the label file")
                    continue
                if candidate.is_file():
                    item = by_hash.get(_hash_file(candidate)[0])
            if item is None:  # last: a file name found exactly once in this project, whatever its folder
                matches = by_name.get(str(named).replace("\\", "/").rsplit("/", 1)[-1], [])
                item = matches[0] if len(matches) == 1 else None
            if item is None:
                problems.append(f"row {k}: no item matches {named!r}")
                continue
        if item in seen:
            if seen[item] != label:
                problems.append(f"row {k}: item {item} appears again with another label "
                                f"({seen[item]!r} then {label!r}); the first is kept")
            continue
        seen[item] = label
        out.append({"item_id": item, "label": str(label)})
    return out, problems


def import_labels(service, path: str | Path, *, fmt: str = "auto", user: str = "import") -> dict:
    """Apply a label file to a project; labels keep the source ``import``. Returns counts and problems."""
    rows, problems, base = read_labels(path, fmt)
    resolved, more = resolve_rows(service.project, rows, base)
    result = service.label_table(resolved, user=user, source="import")
    result["problems"] = problems + more + result["problems"]
    result["rows"] = len(rows)
    return result
