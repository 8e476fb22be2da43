"""Read feature vectors computed elsewhere, with the key (item id or uri) of each row.

:func:`load_precomputed` accepts a ``.npy`` matrix with an ids file (``.npy``, ``.txt`` or
``.csv``), or a Parquet file with a key column and an ``embedding`` list column or numeric
columns, so any modality can be labeled. Every problem (wrong shape, missing or duplicate ids,
NaN rows) is a one-line ``ValueError`` naming the file. Embedding image files is
:mod:`labeling.embed.run`'s job.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Union

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["KEY_COLUMNS", "Keys", "load_precomputed"]

Keys = Union[list[str], npt.NDArray[np.int64]]
KEY_COLUMNS = ("item_id", "uri")
"""Key columns accepted in precomputed files, in order of preference."""


def load_precomputed(
    path: str | os.PathLike[str], *, ids_path: str | os.PathLike[str] | None = None,
) -> tuple[Keys, npt.NDArray[np.float32]]:
    """Read embeddings computed elsewhere, with the key of each row.

    Parameters
    ----------
    path : path
        ``.npy``: a 2-D matrix, with ``ids_path`` giving one key per row. ``.parquet``: a key
        column (``item_id`` or ``uri``) plus either a list column ``embedding`` or numeric
        columns (all other numeric columns, in file order).
    ids_path : path, optional
        For ``.npy`` only: ``.npy`` (integers -> item ids, strings -> uris), ``.txt`` (one uri
        per line) or ``.csv`` (column ``item_id`` or ``uri``).

    Returns
    -------
    keys : list of str or ndarray of int64, length N
        Uris (strings) or item ids (integers).
    vectors : ndarray of float32, shape (N, D)

    Raises
    ------
    ValueError
        Unsupported file type, missing ids, not 2-D, empty, row count differing from the ids,
        NaN/inf rows, duplicate keys. Messages are one line and name the file.
    FileNotFoundError
        A file does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"embeddings file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        if ids_path is None:
            raise ValueError(f"{path.name}: a .npy matrix needs an ids file (--ids FILE: .npy, .txt or .csv) "
                             f"giving the item id or uri of each row")
        vectors = _load_npy_matrix(path)
        keys = _load_ids_file(Path(ids_path))
    elif suffix in (".parquet", ".pq"):
        if ids_path is not None:
            raise ValueError(f"{path.name}: Parquet files carry their own key column; do not pass ids_path")
        keys, vectors = _load_parquet(path)
    else:
        raise ValueError(f"{path.name}: unsupported embeddings file type {suffix or '(none)'}; "
                         f"use .npy with an ids file, or .parquet")
    _validate(path, keys, vectors)
    return keys, np.ascontiguousarray(vectors, dtype=np.float32)


def _load_npy_matrix(path: Path) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except ValueError as exc:  # object arrays, bad header
        raise ValueError(f"{path.name}: not a numeric .npy matrix ({exc})") from exc
    if arr.ndim != 2:
        raise ValueError(f"{path.name}: embeddings must be a 2-D matrix (rows, dims), got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{path.name}: embeddings must be numeric, got dtype {arr.dtype}")
    return arr


def _load_ids_file(ids_path: Path) -> Keys:
    if not ids_path.is_file():
        raise FileNotFoundError(f"ids file {ids_path} does not exist")
    suffix = ids_path.suffix.lower()
    if suffix == ".npy":
        return _load_ids_npy(ids_path)
    if suffix == ".txt":
        return _load_ids_txt(ids_path)
    if suffix == ".csv":
        return _load_ids_csv(ids_path)
    raise ValueError(f"{ids_path.name}: unsupported ids file type {suffix or '(none)'}; use .npy, .txt or .csv")


def _load_ids_npy(ids_path: Path) -> Keys:
    """Keys from a 1-D ``.npy`` array: integers become item ids, strings uris."""
    try:
        arr = np.load(ids_path, allow_pickle=False)
    except ValueError as exc:
        raise ValueError(f"{ids_path.name}: ids must be integers or strings ({exc})") from exc
    if arr.ndim != 1:
        raise ValueError(f"{ids_path.name}: ids must be 1-D, got shape {arr.shape}")
    if np.issubdtype(arr.dtype, np.integer):
        return arr.astype(np.int64)
    if arr.dtype.kind in "US":
        return [x.decode() if isinstance(x, bytes) else str(x) for x in arr.tolist()]
    raise ValueError(f"{ids_path.name}: ids must be integers or strings, got dtype {arr.dtype}")


def _load_ids_txt(ids_path: Path) -> list[str]:
    """Uris from a text file, one per line; trailing blank lines are dropped, inner ones rejected."""
    lines = ids_path.read_text(encoding="utf-8").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    keys = [line.strip() for line in lines]
    if "" in keys:
        raise ValueError(f"{ids_path.name}: line {keys.index('') + 1} is empty; one id per line")
    return keys


def _load_ids_csv(ids_path: Path) -> Keys:
    """Keys from the ``item_id`` or ``uri`` column of a CSV file."""
    import pandas as pd

    frame = pd.read_csv(ids_path, dtype=str, keep_default_na=False)
    return _keys_from_columns(ids_path, {c: frame[c].tolist() for c in frame.columns})


def _keys_from_columns(path: Path, columns: dict[str, list]) -> Keys:
    for name in KEY_COLUMNS:
        if name in columns:
            values = columns[name]
            if any(v is None or (isinstance(v, str) and not v.strip()) for v in values):
                raise ValueError(f"{path.name}: column {name!r} has empty values")
            if name == "uri":
                return [str(v).strip() for v in values]
            try:
                return np.array([int(v) for v in values], dtype=np.int64)
            except (TypeError, ValueError, OverflowError) as exc:
                raise ValueError(f"{path.name}: column 'item_id' must hold integers ({exc})") from exc
    raise ValueError(f"{path.name}: no key column; expected one of {', '.join(KEY_COLUMNS)}, "
                     f"found {', '.join(columns) or 'none'}")


def _load_parquet(path: Path) -> tuple[Keys, np.ndarray]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ValueError(f"{path.name}: cannot read Parquet ({exc})") from exc
    names = table.column_names
    key_name = next((k for k in KEY_COLUMNS if k in names), None)
    if key_name is None:
        raise ValueError(f"{path.name}: no key column; expected one of {', '.join(KEY_COLUMNS)}, "
                         f"found {', '.join(names) or 'none'}")
    keys = _keys_from_columns(path, {key_name: table.column(key_name).to_pylist()})
    if "embedding" in names:
        vectors = _parquet_embedding_vectors(path, table)
    else:
        vectors = _parquet_numeric_vectors(path, table)
    return keys, vectors


def _parquet_embedding_vectors(path: Path, table: pa.Table) -> np.ndarray:
    """The float64 matrix held in the list column ``embedding``, one equal-length list per row."""
    import pyarrow as pa
    import pyarrow.compute as pc

    column = table.column("embedding").combine_chunks()
    if not (pa.types.is_list(column.type) or pa.types.is_large_list(column.type)
            or pa.types.is_fixed_size_list(column.type)):
        raise ValueError(f"{path.name}: column 'embedding' must be a list of numbers, got {column.type}")
    if column.null_count:
        raise ValueError(f"{path.name}: column 'embedding' has {column.null_count} empty rows")
    lengths = np.asarray(pc.list_value_length(column))
    if len(lengths) and (lengths != lengths[0]).any():
        raise ValueError(f"{path.name}: embeddings have different lengths "
                         f"({', '.join(map(str, np.unique(lengths)[:5]))})")
    value_type = column.type.value_type
    if not (pa.types.is_floating(value_type) or pa.types.is_integer(value_type)):
        raise ValueError(f"{path.name}: column 'embedding' must hold numbers, got {value_type}")
    flat = column.flatten().to_numpy(zero_copy_only=False)
    dim = int(lengths[0]) if len(lengths) else 0
    return flat.astype(np.float64, copy=False).reshape(len(column), dim)


def _parquet_numeric_vectors(path: Path, table: pa.Table) -> np.ndarray:
    """The float64 matrix of the numeric non-key columns, in file order."""
    import pyarrow as pa

    numeric = [n for n in table.column_names if n not in KEY_COLUMNS
               and (pa.types.is_floating(table.schema.field(n).type)
                    or pa.types.is_integer(table.schema.field(n).type))]
    if not numeric:
        raise ValueError(f"{path.name}: no 'embedding' list column and no numeric columns")
    return np.column_stack([table.column(n).to_numpy(zero_copy_only=False).astype(np.float64)
                            for n in numeric])


def _validate(path: Path, keys: Keys, vectors: np.ndarray) -> None:
    if vectors.ndim != 2:
        raise ValueError(f"{path.name}: embeddings must be 2-D, got shape {vectors.shape}")
    if vectors.shape[0] == 0 or vectors.shape[1] == 0:
        raise ValueError(f"{path.name}: no embeddings (shape {vectors.shape})")
    if len(keys) != len(vectors):
        raise ValueError(f"{path.name}: {len(vectors)} embedding rows but {len(keys)} ids")
    key_arr = np.asarray(keys) if isinstance(keys, np.ndarray) else np.asarray(keys, dtype=object)
    with np.errstate(invalid="ignore", over="ignore"):
        bad = ~np.isfinite(np.asarray(vectors, dtype=np.float32)).all(axis=1)
    if bad.any():
        first = ", ".join(map(str, key_arr[bad][:5]))
        raise ValueError(f"{path.name}: {int(bad.sum())} rows have NaN or inf values (first ids: {first})")
    uniq, counts = np.unique(key_arr.astype(str) if key_arr.dtype == object else key_arr, return_counts=True)
    if (counts > 1).any():
        dup = uniq[counts > 1]
        raise ValueError(f"{path.name}: {len(dup)} ids occur more than once (first: "
                         f"{', '.join(map(str, dup[:5]))})")
