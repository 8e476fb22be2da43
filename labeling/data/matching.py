"""Which project item a row of a label or predictions file names: by item id, by uri, by a path that
leads to an image of the project, by the content of a file inside the file's folder, or by a file name
found exactly once in the project (so absolute paths from another machine match too)."""
from __future__ import annotations

from pathlib import Path

from labeling.data.images import _hash_file
from labeling.data.times import utc_time
from labeling.project import Project
from storage import items as items_q
from storage import labels as labels_q


class LabelFileError(ValueError):
    """A label file that cannot be read as the format asked."""


def _whole(value: object) -> int | None:
    """An item id cell as an int (``12``, ``"12"``, ``12.0``); None when it is not a whole number."""
    try:
        number = float(str(value).strip())
    except (TypeError, ValueError):
        return None
    return int(number) if number.is_integer() else None


class RowMatcher:
    """Finds the project item a label row names: by id, by uri, by a path, by content, by file name."""

    def __init__(self, project: Project, base: Path) -> None:
        with project.db.session() as con:
            self.known = items_q.known_uris(con)
            self.by_hash = items_q.ids_by_hash(con)
        self.ok_uris = {uri: item_id for uri, (item_id, _sha, status) in self.known.items() if status == "ok"}
        self.ok_ids = set(self.ok_uris.values())
        self.by_name: dict[str, list[int]] = {}
        for uri, item_id in self.ok_uris.items():
            self.by_name.setdefault(uri.rsplit("/", 1)[-1], []).append(item_id)
        self.root = project.root.resolve()
        self.base = base
        self.base_resolved = base.resolve()

    def match(self, row: dict, where: str) -> tuple[int | None, str | None, str | None]:
        """(item id, how the row names it, None), or (None, _, problem) when no item can be used."""
        named = row.get("uri") or row.get("file_name")
        if named is None:  # only an id: ids belong to one project, so this suits files from this project
            return self._by_id(row, where)
        # a path names the same image in any project: by path here, else by the file's content
        item, problem = self._by_path(row, where, named)
        return item, named, problem

    def _by_id(self, row: dict, where: str) -> tuple[int | None, str | None, str | None]:
        """The item of a row that gives only an ``item_id``."""
        item = _whole(row.get("item_id"))
        if item is None:
            return None, None, f"{where}: needs a uri, a file_name or an item_id (a whole number)"
        if item not in self.ok_ids:
            return None, None, f"{where}: no readable item has id {item}, ignored"
        return item, f"item {item}", None

    def _by_uri(self, row: dict) -> tuple[int | None, str | None]:
        """(the readable item whose uri is the row's uri or file name, why a uri found is unusable)."""
        unusable = None
        for key in ("uri", "file_name"):
            name = row.get(key)
            if name is not None and name in self.ok_uris:
                return self.ok_uris[name], unusable
            if name is not None and name in self.known:
                unusable = f"{name!r} is a {self.known[name].status} file in the project"
        return None, unusable

    def _by_file(self, file_name: str, where: str) -> tuple[int | None, str | None]:
        """(the item a file name leads to, or has the content of; a problem when it cannot be used)."""
        try:
            real = (self.base / file_name).resolve()
        except (OSError, ValueError):
            return None, f"{where}: invalid path {file_name!r}"
        item = None
        if real.is_relative_to(self.root):  # it leads to a file of the project: no need to read it
            item = self.ok_uris.get(real.relative_to(self.root).as_posix())
        if item is None:
            if not real.is_relative_to(self.base_resolved):
                # a path from another machine, or outside the label file's folder: never read; its file
                # name may still name one image of the project (the last resort of _by_path)
                return None, (None if self._unique_name(file_name) is not None
                              else f"{where}: {file_name!r} leaves the folder of the label file, not read")
            if real.is_file():
                item = self.by_hash.get(_hash_file(real)[0])
        return item, None

    def _unique_name(self, named: str) -> int | None:
        """The one readable item with this file name (None when none or several have it)."""
        matches = self.by_name.get(named.replace("\\", "/").rsplit("/", 1)[-1], [])
        return matches[0] if len(matches) == 1 else None

    def _by_path(self, row: dict, where: str, named: str) -> tuple[int | None, str | None]:
        """(the item a row naming a uri or file name matches, None) or (None, problem)."""
        item, unusable = self._by_uri(row)
        file_name = row.get("file_name")
        if item is None and file_name:
            item, problem = self._by_file(file_name, where)
            if problem is not None:
                return None, problem
        if item is None and unusable is None:  # last: a file name found exactly once in this project
            item = self._unique_name(named)
        if item is None:
            return None, (f"{where}: {unusable}, ignored" if unusable
                          else f"{where}: no item matches {named!r}")
        return item, None


def _repeat_problem(where: str, named: str, label: object, first: tuple[object, str]) -> str:
    """The problem line for a row naming an image that an earlier row (``first``: label, where) named."""
    first_label, first_where = first
    if first_label == label:
        return f"{where}: {named!r} repeats {first_where} (the same image), ignored"
    return (f"{where}: {named!r} is labelled {label!r} here but {first_label!r} on {first_where} "
            f"(the same image); keeping {first_label!r}")


def resolve_rows(project: Project, rows: list[dict], base: Path, *,
                 source: str = "") -> tuple[list[dict], list[str]]:
    """Rows as ``{"item_id", "label"}`` for ``LabelingService.label_table``; unmatched rows are problems.

    Only files inside ``base`` are read (to compare contents); a file name that leads outside it is a
    problem, unless it leads to an image of the project (then nothing needs reading). A matched row
    whose label cannot be a class name raises :class:`LabelFileError` (``source``: the file it names).
    """
    matcher = RowMatcher(project, base)
    out, problems = [], []
    seen: dict[int, tuple[str, str]] = {}
    for k, row in enumerate(rows, start=1):
        where = row.get("where") or f"row {k}"
        label = row.get("label")
        if label is None:  # an unlabeled row (exports list every item): nothing to import
            continue
        item, named, problem = matcher.match(row, where)
        if problem is not None:
            problems.append(problem)
            continue
        bad_name = labels_q.name_problem(str(label))
        if bad_name is not None:  # it would become a class: refuse the whole file, nothing written
            raise LabelFileError(f"{source} {where}: {bad_name}; nothing imported".strip())
        if item in seen:
            problems.append(_repeat_problem(where, named, label, seen[item]))
            continue
        seen[item] = (label, where)
        when, bad_time = utc_time(row.get("created_at"))
        if bad_time:
            problems.append(f"{where}: the time {row.get('created_at')!r} is not an ISO 8601 time; the import's time kept")
        out.append({"item_id": item, "label": str(label), "annotator": row.get("annotator"), "created_at": when})
    return out, problems
