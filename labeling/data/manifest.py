"""Reading manifests: tables that list image files and, optionally, their labels.

A manifest is a CSV, TSV or Parquet file with a ``path`` column and an
optional ``label`` column. Reading is forgiving about rows and strict about
the file: a bad row (missing file, path outside the project root, duplicate)
becomes a line in :attr:`Manifest.problems` and is left out, while a file that
cannot be read as a table at all raises :class:`ManifestError`.

Labels are plain strings: whatever a cell holds (after stripping surrounding
whitespace) is the class name, including text that looks like code.
"""
from __future__ import annotations

import csv
import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

__all__ = [
    "LABEL_COLUMNS",
    "MANIFEST_SUFFIXES",
    "PATH_COLUMNS",
    "Manifest",
    "ManifestError",
    "ManifestRow",
    "read_manifest",
]

log = logging.getLogger(__name__)

PATH_COLUMNS = ("path", "uri", "file", "filename", "image")
"""Accepted names of the path column (case-insensitive), in order of preference."""

LABEL_COLUMNS = ("label", "class", "category")
"""Accepted names of the optional label column (case-insensitive), in order of preference."""

MANIFEST_SUFFIXES = (".csv", ".tsv", ".parquet")
"""File types read by :func:`read_manifest`, chosen by extension."""

_DELIMITERS = {".csv": ",", ".tsv": "\t"}
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")


class ManifestError(ValueError):
    """A manifest that cannot be read as a table, with the reason in one line.

    Parameters
    ----------
    path : str or os.PathLike
        The manifest file.
    reason : str
        What is wrong with it.
    """

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):
        return (type(self), (self.path, self.reason))


@dataclass(frozen=True)
class ManifestRow:
    """One usable manifest entry.

    Attributes
    ----------
    path : Path
        Absolute path of an existing file inside the project root.
    label : str or None
        Class name, stripped; None when the cell is empty or there is no
        label column.
    line : int
        Where the row came from: for CSV/TSV the line of the file on which the
        record starts (the header is line 1); for Parquet the 1-based row number.
    """

    path: Path
    label: str | None
    line: int


@dataclass(frozen=True)
class Manifest:
    """The rows of a manifest that can be used, and what was wrong with the others.

    Attributes
    ----------
    rows : list of ManifestRow
        In file order, one per distinct path.
    problems : list of str
        One readable line per problem, e.g. ``"line 7: file not found: 'a.jpg'"``.
    """

    rows: list[ManifestRow]
    problems: list[str]


def _clean(value: object) -> str | None:
    """Cell value as a stripped string; None for empty or missing cells."""
    if value is None:
        return None
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if value.is_integer():
            value = int(value)
    text = value if isinstance(value, str) else str(value)
    text = text.strip()
    return text or None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _unreadable(path: Path, exc: OSError) -> ManifestError:
    return ManifestError(path, f"cannot read manifest: {exc.strerror or _one_line(exc)}")


def _iter_delimited(path: Path, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """(first line of the record, cells) for each non-blank record, header included."""
    line = 0
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            reader = csv.reader(fh, delimiter=delimiter, strict=True)
            for cells in reader:
                start, line = line + 1, reader.line_num
                if any(cell.strip() for cell in cells):
                    yield start, cells
    except UnicodeDecodeError as exc:
        reason = f"not a UTF-8 text file (near line {line + 1}): {exc.reason}"
        raise ManifestError(path, reason) from exc
    except csv.Error as exc:
        reason = (f"line {line + 1}: a field is longer than {csv.field_size_limit()} characters"
                  if "field limit" in str(exc)
                  else f"malformed {path.suffix[1:].upper()} near line {line + 1}: {_one_line(exc)}")
        raise ManifestError(path, reason) from exc
    except OSError as exc:
        raise _unreadable(path, exc) from exc


def _iter_parquet(path: Path) -> Iterator[tuple[int, list[object]]]:
    """Header then (1-based row number, cells) for each row."""
    try:
        table = pq.read_table(path)
    except OSError as exc:
        if exc.strerror:
            raise ManifestError(path, f"cannot read manifest: {exc.strerror}") from exc
        raise ManifestError(path, f"not a readable Parquet file: {_one_line(exc)}") from exc
    except pa.ArrowException as exc:
        raise ManifestError(path, f"not a readable Parquet file: {_one_line(exc)}") from exc
    yield 0, list(table.column_names)
    wanted = {_normalise(name) for name in PATH_COLUMNS + LABEL_COLUMNS}
    columns = [
        table.column(i).to_pylist() if _normalise(name) in wanted else None
        for i, name in enumerate(table.column_names)
    ]
    for row in range(table.num_rows):
        yield row + 1, [None if col is None else col[row] for col in columns]


def _normalise(name: object) -> str:
    return str(name).strip().lower()


def _pick(header: list[str], aliases: tuple[str, ...]) -> int | None:
    for alias in aliases:
        if alias in header:
            return header.index(alias)
    return None


def _show(label: str | None) -> str:
    return "no label" if label is None else repr(label)


class _Resolver:
    """Turns path cells into checked absolute paths inside the project root."""

    def __init__(self, manifest: Path, root: Path) -> None:
        self.base = Path(os.path.abspath(manifest.parent))
        self.roots = (Path(os.path.abspath(root)), Path(os.path.realpath(root)))
        self.root_real = self.roots[1]

    def __call__(self, cell: str) -> tuple[Path | None, str | None]:
        """(path, None) for a usable file, else (None, problem)."""
        try:
            lexical = Path(os.path.abspath(self.base / cell))
            real = Path(os.path.realpath(lexical))
        except ValueError:  # e.g. an embedded NUL character
            return None, f"invalid path {cell!r}"
        if not real.is_relative_to(self.root_real):
            return None, f"{cell!r} is outside the project root, not read"
        if not any(lexical.is_relative_to(r) for r in self.roots):
            lexical = real  # reached through another name for the root: use the real one
        if not real.exists():
            return None, f"file not found: {cell!r}"
        if not real.is_file():
            return None, f"not a file: {cell!r}"
        return lexical, None


def _open_records(path: Path) -> tuple[Iterator[tuple[int, list]], str]:
    """The manifest's records (header first) and the unit that locates them (``line`` or ``row``).

    Raises :class:`ManifestError` for an unsupported extension, or a path that is not a readable file.
    """
    suffix = path.suffix.lower()
    if suffix not in MANIFEST_SUFFIXES:
        reason = f"unsupported manifest type {suffix or '(none)'!r}"
        raise ManifestError(path, f"{reason}: expected one of {', '.join(MANIFEST_SUFFIXES)}")
    try:
        is_file = path.is_file()
    except OSError as exc:
        raise _unreadable(path, exc) from exc
    if not is_file:
        reason = "it is a folder" if path.is_dir() else "no such file"
        raise ManifestError(path, f"cannot read manifest: {reason}")
    if suffix == ".parquet":
        return _iter_parquet(path), "row"
    return _iter_delimited(path, _DELIMITERS[suffix]), "line"


def _columns(path: Path, names: list) -> tuple[list[str], int, int | None]:
    """Normalised header, index of the path column and of the label column (None without one).

    Raises :class:`ManifestError` when no column is a path column.
    """
    header = [_normalise(name) for name in names]
    path_col = _pick(header, PATH_COLUMNS)
    if path_col is None:
        found = ", ".join(repr(name) for name in header[:8]) + (", ..." if len(header) > 8 else "")
        hint = ""
        if any(_normalise(cell).endswith(_IMAGE_SUFFIXES) for cell in names):
            hint = " (the first row looks like data: is the header row missing?)"
        raise ManifestError(
            path, f"no path column: expected one of {', '.join(PATH_COLUMNS)}; found {found}{hint}"
        )
    return header, path_col, _pick(header, LABEL_COLUMNS)


def _repeat_problem(unit: str, line: int, cell: str, label: str | None, earlier: ManifestRow) -> str:
    """The problem line for a path listed again on ``line``, after ``earlier``."""
    if earlier.label == label:
        return f"{unit} {line}: {cell!r} repeats {unit} {earlier.line}, ignored"
    first = _show(earlier.label)
    return (
        f"{unit} {line}: {cell!r} is labelled {_show(label)} here but "
        f"{first} on {unit} {earlier.line}; keeping {first}"
    )


@dataclass
class _RowReader:
    """Turns manifest records into rows, once per distinct path, noting problems as it goes."""

    header: list[str]
    path_col: int
    label_col: int | None
    unit: str
    resolve: _Resolver
    problems: list[str]

    def read(self, records: Iterator[tuple[int, list]]) -> list[ManifestRow]:
        """The usable rows of ``records`` in order; the others become problems."""
        rows: list[ManifestRow] = []
        seen: dict[Path, ManifestRow] = {}
        for line, cells in records:
            row = self._row(line, cells, seen)
            if row is not None:
                seen[row.path] = row
                rows.append(row)
        return rows

    def _row(self, line: int, cells: list, seen: dict[Path, ManifestRow]) -> ManifestRow | None:
        """The row for one record, or None (with its problem noted) when it cannot be used."""
        unit, problems = self.unit, self.problems
        if unit == "line" and len(cells) > len(self.header):
            problems.append(
                f"line {line}: {len(cells)} fields but the header has {len(self.header)}; "
                "extra fields ignored"
            )
        cell = _clean(cells[self.path_col]) if self.path_col < len(cells) else None
        has_label = self.label_col is not None and self.label_col < len(cells)
        label = _clean(cells[self.label_col]) if has_label else None
        if cell is None:
            problems.append(f"{unit} {line}: empty path")
            return None
        file, problem = self.resolve(cell)
        if file is None:
            problems.append(f"{unit} {line}: {problem}")
            return None
        earlier = seen.get(file)
        if earlier is not None:
            problems.append(_repeat_problem(unit, line, cell, label, earlier))
            return None
        return ManifestRow(path=file, label=label, line=line)


def read_manifest(path: str | os.PathLike[str], *, root: str | os.PathLike[str]) -> Manifest:
    """Read the rows of a CSV, TSV or Parquet manifest.

    The path column may be called ``path``, ``uri``, ``file``, ``filename`` or
    ``image``; the label column ``label``, ``class`` or ``category`` (names
    are case-insensitive). Other columns are ignored and named once in
    ``problems``. Relative paths are taken from the manifest's folder.

    Rows that cannot be used are left out, each with a problem naming its
    line: a path that resolves outside ``root`` (never opened), a missing
    file, an empty path. A path listed twice is kept once (its first row);
    a second row with a different label is reported, and the first label wins.

    Parameters
    ----------
    path : str or os.PathLike
        The manifest; its extension (``.csv``, ``.tsv`` or ``.parquet``,
        any case) picks the reader. CSV/TSV must be UTF-8 (a BOM is fine)
        with a header row.
    root : str or os.PathLike
        The project root; every listed file must be inside it.

    Returns
    -------
    Manifest
        The usable rows in file order and the problems found.

    Raises
    ------
    ManifestError
        If the file has an unsupported extension, does not exist, cannot be
        read, is not valid UTF-8 CSV/TSV or Parquet, is empty, or has no path
        column.
    """
    path = Path(path)
    records, unit = _open_records(path)
    first = next(records, None)
    if first is None:
        raise ManifestError(path, "empty manifest: no header row")
    header, path_col, label_col = _columns(path, first[1])

    problems: list[str] = []
    ignored = [name for i, name in enumerate(header) if name and i not in (path_col, label_col)]
    if ignored:
        problems.append(f"ignored columns: {', '.join(repr(name) for name in ignored)}")

    reader = _RowReader(header, path_col, label_col, unit, _Resolver(path, Path(root)), problems)
    rows = reader.read(records)
    log.info("read manifest %s: %d rows, %d problems", path, len(rows), len(problems))
    return Manifest(rows=rows, problems=problems)
