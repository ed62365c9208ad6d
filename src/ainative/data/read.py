"""``read_parquet``: Parquet files from a local path, ``file://`` or an object-store URI.

Paths are resolved and listed in the driver through ``pyarrow.fs`` (so an unreadable path fails
before any task runs); each file is then read by one Ray task straight into the object store.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from ainative import errors
from ainative.data import _blocks, _runtime
from ainative.data.dataset import Dataset, StaticBlocks


def _resolve(path: str) -> tuple[Any, str]:
    import pyarrow.fs as pafs

    if not isinstance(path, str) or not path:
        raise errors.ConfigError(f"read_parquet() takes a path or URI string, got {path!r}",
                                 field="paths", value=repr(path))
    try:
        if "://" in path:
            return pafs.FileSystem.from_uri(path)
        return pafs.LocalFileSystem(), path
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
        raise errors.DataError(f"cannot open {path!r}: {exc}; use a local path, file:///abs/path "
                               "or an object-store URI such as s3://bucket/prefix", path=path) from None


def _list_files(path: str) -> tuple[Any, list[str]]:
    import pyarrow.fs as pafs

    fs, inner = _resolve(path)
    try:
        info = fs.get_file_info(inner)
        if info.type == pafs.FileType.NotFound:
            raise errors.DataError(f"read_parquet: {path!r} does not exist", path=path)
        if info.type == pafs.FileType.File:
            return fs, [inner]
        found = fs.get_file_info(pafs.FileSelector(inner, recursive=True))
    except OSError as exc:
        raise errors.DataError(f"read_parquet: cannot read {path!r}: {exc}", path=path) from None
    files = sorted(f.path for f in found if f.type == pafs.FileType.File
                   and not f.base_name.startswith((".", "_")))
    if not files:
        raise errors.DataError(f"read_parquet: no files under {path!r}", path=path)
    return fs, files


def _read_task(fs: Any, path: str, columns: list[str] | None) -> tuple[pa.Table, tuple[int, int]]:
    import pyarrow.parquet as pq

    try:
        table = _blocks.compact(pq.read_table(path, filesystem=fs, columns=columns))
    except (OSError, pa.ArrowException) as exc:
        raise errors.DataError(f"read_parquet: cannot read {path!r}: {exc}", path=path) from None
    return table, (table.num_rows, table.nbytes)


def read_parquet(paths: str | Sequence[str], *, columns: Sequence[str] | None = None,
                 concurrency: int | None = None) -> Dataset:
    """One block per Parquet file under ``paths`` (files, directories, ``file://``, ``s3://``...)."""
    import pyarrow.parquet as pq
    import ray

    listed: list[tuple[Any, str]] = []
    for path in [paths] if isinstance(paths, str) else list(paths):
        fs, files = _list_files(path)
        listed.extend((fs, f) for f in files)
    schemas = []
    for fs, f in listed:  # footers only: catches a non-Parquet file and schema drift up front
        try:
            with fs.open_input_file(f) as handle:
                schema = pq.read_schema(handle)
        except (OSError, pa.ArrowException) as exc:
            raise errors.DataError(f"read_parquet: {f!r} is not a readable Parquet file: {exc}",
                                   path=f) from None
        schemas.append(schema if columns is None else pa.schema([schema.field(c) for c in columns
                                                                 if c in schema.names]))
    schema = _blocks.check_schemas(schemas, "file")
    _runtime.ensure_ray()
    task = _runtime.remote(_read_task, num_returns=2)
    cols = list(columns) if columns is not None else None
    outs: list[Any] = [None] * len(listed)

    def submit(i: int) -> Any:
        outs[i] = task.remote(listed[i][0], listed[i][1], cols)
        return outs[i][1]

    with _runtime.progress(len(listed), "read_parquet", unit="file") as bar:
        _runtime.bounded(submit, len(listed), concurrency or _runtime.parallelism(), bar=bar)
    try:
        meta = ray.get([m for _, m in outs])
    except Exception as exc:
        raise _runtime.unwrap(exc) from None
    return Dataset(StaticBlocks([t for t, _ in outs], [tuple(m) for m in meta]), schema)
