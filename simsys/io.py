"""Writing cohorts to files: Parquet or CSV, chunk by chunk, never half-written.

A file appears under its final name only once it is complete: chunks go to a temporary file in
the same folder, renamed into place at the end (an atomic rename on POSIX).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from simsys.errors import SimsysError
from simsys.scenario import Scenario
from simsys.simulate import CHUNK, iter_chunks

FORMATS = (".parquet", ".csv")


def write_cohort(scenario: Scenario, path: str | os.PathLike, *, n: int, seed=None,
                 population: str = "train", biased: bool | None = None,
                 threads: int | None = None, chunk_size: int = CHUNK, view: str | None = None) -> int:
    """Sample ``n`` patients chunk by chunk into ``path`` (format by extension); return rows written."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise SimsysError(f"{path}: unknown output format {suffix or '(none)'!r}; allowed: .parquet, .csv")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    rows = 0
    try:
        writer = None
        for i, df in enumerate(iter_chunks(scenario, n, seed=seed, population=population, biased=biased,
                                           chunk_size=chunk_size, threads=threads, view=view)):
            rows += len(df)
            if suffix == ".csv":
                df.to_csv(tmp, mode="a" if i else "w", header=(i == 0), index=False)
            else:
                table = pa.Table.from_pandas(df, preserve_index=False)
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema)
                writer.write_table(table)
        if writer is not None:
            writer.close()
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; give the usual mode
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return rows


def atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it into place."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        # mkstemp creates the file private (0600); outputs get the usual mode, as open() would give
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _umask() -> int:
    # os.umask can only be read by setting it; read it once, from the main thread (first write)
    global _UMASK
    if _UMASK is None:
        _UMASK = os.umask(0o022)
        os.umask(_UMASK)
    return _UMASK


_UMASK: int | None = None
