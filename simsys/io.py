"""Writing files that are never half-written, and checking first that they fit.

A file appears under its final name only once it is complete: it is written to a temporary file
in the same folder, renamed into place at the end (an atomic rename on POSIX); an error or an
interruption removes the temporary file. Cohorts are written chunk by chunk (bounded memory).

Before a large write or a large run, :func:`check_fits` compares the bytes needed with what the
machine holds (:func:`available_memory`, :func:`free_disk`), so that an absurd size is a one-line
error at the start rather than a disk filled or a process killed hours later. Operating-system
errors become one-line messages through :func:`os_error_text`.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from simsys.errors import SimsysError
from simsys.scenario import Scenario
from simsys.simulate import CHUNK, build_plan, iter_chunks

FORMATS = (".parquet", ".csv")
#: Patients beyond this cannot be numbered (int64 patient ids, with room for offsets).
MAX_PATIENTS = 1 << 62


def write_cohort(scenario: Scenario, path: str | os.PathLike, *, n: int, seed=None,
                 population: str = "train", biased: bool | None = None,
                 threads: int | None = None, chunk_size: int = CHUNK, view: str | None = None) -> int:
    """Sample ``n`` patients chunk by chunk into ``path`` (format by extension); return rows written.

    Raises
    ------
    SimsysError
        For an unknown format, a cohort that cannot fit on the disk (or a chunk in memory), or a
        path that cannot be written (the message names the path and the reason); nothing is left
        behind.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise SimsysError(f"{path}: unknown output format {suffix or '(none)'!r}; allowed: .parquet, .csv")
    plan = build_plan(scenario, population, biased=biased, view=view)
    p = plan.program
    key = f"population {population!r}"
    disk_row = (20 * len(p.columns_f) + 4 * len(p.columns_u) + 20 if suffix == ".csv"
                else 8 * len(p.columns_f) + len(p.columns_u) + 8)
    # a chunk lives as the sampler's buffers, a DataFrame and an Arrow table at once
    memory_row = 3 * (8 * len(p.columns_f) + len(p.columns_u) + 8)
    try:
        check_fits(n, disk_row, free_disk(_existing_ancestor(path.parent)),
                   where=f"{path}: {key}: {n} patients",
                   holds="on disk", room_label=f"free in {path.parent}", allowed="a smaller -n")
        check_fits(min(n, chunk_size), memory_row, available_memory(),
                   where=f"{path}: --chunk-size: {min(n, chunk_size)} patients per chunk",
                   holds="in memory", room_label="available", allowed="a smaller --chunk-size")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    except OSError as exc:
        raise SimsysError(f"{path}: cannot write the cohort ({os_error_text(exc)}); "
                          "choose a writable -o path") from None
    os.close(fd)
    rows = 0
    writer = None
    try:
        for i, df in enumerate(iter_chunks(scenario, n, seed=seed, population=population, biased=biased,
                                           chunk_size=chunk_size, threads=threads, view=view)):
            raise_if_interrupted()
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
            writer = None
        raise_if_interrupted()
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; give the usual mode
        os.replace(tmp, path)
    except OSError as exc:
        raise SimsysError(f"{path}: cannot write the cohort ({os_error_text(exc)}); "
                          "choose a writable -o path with room for it") from None
    except KeyboardInterrupt as exc:  # SIGINT, or SIGTERM turned into it by the CLI
        exc.simsys_detail = f"nothing was written to {path}"
        raise
    finally:
        if writer is not None:
            try:
                writer.close()
            except Exception:  # the write failed already; its error is the one to report
                pass
        if os.path.exists(tmp):
            os.unlink(tmp)
    return rows


def atomic_write(path: Path, write: Callable[[str], None], *, suffix: str = "") -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it into place.

    ``suffix`` is appended to the temporary name (after ``.part``), for writers that pick the
    format by the file name (a graph's ``.svg``).
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part" + suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        # mkstemp creates the file private (0600); outputs get the usual mode, as open() would give
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


# --- interruptions ----------------------------------------------------------------------------
#: The interruption (SIGINT, SIGTERM) the CLI's signal handler raised, kept until the command ends.
#: An exception raised by a signal handler is lost when it lands in a ``__del__`` or a callback
#: (Python prints "Exception ignored" and goes on), so long loops raise it again between steps.
_pending_interrupt: KeyboardInterrupt | None = None


def note_interrupt(exc: KeyboardInterrupt | None) -> None:
    """Record (or, with None, forget) an interruption for :func:`raise_if_interrupted`."""
    global _pending_interrupt
    _pending_interrupt = exc


def raise_if_interrupted() -> None:
    """Raise the recorded interruption, if any (called between chunks and between cells)."""
    if _pending_interrupt is not None:
        raise _pending_interrupt


# --- what the machine can hold --------------------------------------------------------------
def check_fits(n: int, bytes_each: int, room: int | None, *, where: str, holds: str,
               room_label: str, allowed: str) -> None:
    """Raise a one-line :class:`SimsysError` when ``n`` items of ``bytes_each`` bytes exceed ``room``.

    The message reads ``<where> need about <bytes> <holds> (<bytes_each> bytes each), but <room>
    is <room_label>; allowed: <allowed>``. With ``room`` None (unknown) only
    :data:`MAX_PATIENTS` is checked.
    """
    if n > MAX_PATIENTS:
        raise SimsysError(f"{where}: more than {MAX_PATIENTS} patients cannot be numbered; "
                          f"allowed: {allowed}")
    need = n * bytes_each
    if room is not None and need > room:
        raise SimsysError(f"{where} need about {format_bytes(need)} {holds} ({bytes_each} bytes "
                          f"each), but {format_bytes(room)} is {room_label}; allowed: {allowed}")


def available_memory() -> int | None:
    """Bytes of memory this process can still use: MemAvailable, lowered by a cgroup limit."""
    avail = None
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError):
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):
            return None
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            limit = Path(limit_file).read_text().strip()
            usage = int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit():
            avail = min(avail, max(0, int(limit) - usage))
        break
    return avail


def free_disk(folder: str | os.PathLike) -> int | None:
    """Bytes free for this user on the file system holding ``folder`` (None if unknown)."""
    try:
        usage = shutil.disk_usage(folder)
    except OSError:
        return None
    # pseudo file systems (/proc, /sys) report no size at all: not a disk to measure
    return usage.free if usage.total > 0 else None


def _existing_ancestor(folder: Path) -> Path:
    """``folder``, or its nearest ancestor that exists (where a new folder would be made)."""
    for p in (folder, *folder.parents):
        if p.exists():
            return p
    return folder


def format_bytes(n: float) -> str:
    """``1536`` -> ``'1.5 KiB'``: binary units, three significant digits."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if abs(n) < 1024 or unit == "EiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1024
    raise AssertionError  # pragma: no cover


# --- operating-system errors as one line ----------------------------------------------------
_TEMP_NAME = re.compile(r"\.(?P<name>.+)\.[A-Za-z0-9_]{8}\.part(?:\.[A-Za-z0-9]+)?")


def os_error_text(exc: OSError) -> str:
    """``'No space left on device'``: the reason of an OSError, without its temporary file names."""
    why = exc.strerror or str(exc) or type(exc).__name__
    return why


def os_error_path(exc: OSError, default: str | os.PathLike) -> Path:
    """The file an OSError is about, with a temporary ``.name.XXXXXXXX.part`` shown as ``name``."""
    if not exc.filename:
        return Path(default)
    p = Path(os.fsdecode(exc.filename))
    m = _TEMP_NAME.fullmatch(p.name)
    return p.with_name(m["name"]) if m else p


def _umask() -> int:
    # os.umask can only be read by setting it; read it once, from the main thread (first write)
    global _UMASK
    if _UMASK is None:
        _UMASK = os.umask(0o022)
        os.umask(_UMASK)
    return _UMASK


_UMASK: int | None = None
