"""Reading a recorded CSV for ``edgeflow replay``: columns by name, timestamps in the formats recorded
data uses, values as float64 with empty cells as missing readings. Every problem names the file and the
line."""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from edgeflow.errors import ValueFormatError

__all__ = ["CsvSeries", "parse_times", "read_csv"]

_EPOCH: Final = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_NAIVE: Final = re.compile(r"^\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?)?$")
_FORMATS: Final = "ISO 8601 (e.g. 2014-01-07T02:00:00Z), 'YYYY-MM-DD hh:mm:ss', or epoch s / ms / us / ns"


@dataclass(frozen=True)
class CsvSeries:
    """What a CSV holds: ``times`` (ns since the epoch, UTC), the original time strings, and one column
    of values per value column (NaN where the cell is empty, with ``present`` False there)."""

    path: Path
    time_column: str
    value_columns: tuple[str, ...]
    time_text: list[str]
    times: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]  # rows x columns
    present: npt.NDArray[np.bool_]  # rows x columns


def _fail(path: Path, line: int, msg: str) -> ValueFormatError:
    return ValueFormatError(f"{path}: line {line}: {msg}")


def parse_times(texts: list[str], path: Path, first_line: int = 2) -> npt.NDArray[np.int64]:
    """Timestamps to int64 ns. One format per column: all epoch numbers (unit from the largest
    magnitude: < 1e11 seconds, < 1e14 ms, < 1e17 us, else ns), all naive ``YYYY-MM-DD[ T]hh:mm[:ss[.f]]``
    (read as UTC), or ISO 8601 with offsets (naive ones read as UTC)."""
    n = len(texts)
    if n == 0:
        return np.empty(0, dtype=np.int64)
    stripped = [s.strip() for s in texts]
    if _EPOCH.match(stripped[0]):
        for i, s in enumerate(stripped):
            if not _EPOCH.match(s):
                raise _fail(
                    path, first_line + i, f"time {texts[i]!r} is not an epoch number like the rows before"
                )
        if all(s.lstrip("+-").isdigit() for s in stripped):
            ints = [int(s) for s in stripped]
            big = max(abs(x) for x in ints)
            scale = 10**9 if big < 10**11 else 10**6 if big < 10**14 else 10**3 if big < 10**17 else 1
            try:
                return np.array(ints, dtype=np.int64) * np.int64(scale)
            except OverflowError:
                raise _fail(path, first_line, "epoch times are out of range") from None
        f = np.array(stripped, dtype=np.float64)
        big_f = float(np.abs(f).max())
        scale_f = 1e9 if big_f < 1e11 else 1e6 if big_f < 1e14 else 1e3 if big_f < 1e17 else 1.0
        return np.rint(f * scale_f).astype(np.int64)
    if all(_NAIVE.match(s) for s in stripped):
        try:
            return np.array(stripped, dtype="datetime64[ns]").astype(np.int64)
        except ValueError:
            pass  # a calendar error (month 13): find the row below
    out = np.empty(n, dtype=np.int64)
    for i, s in enumerate(stripped):
        try:
            dt = datetime.fromisoformat(s.replace("z", "Z"))
        except ValueError:
            raise _fail(
                path, first_line + i, f"time {texts[i]!r} is not in a known format ({_FORMATS})"
            ) from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        delta = dt - datetime(1970, 1, 1, tzinfo=UTC)
        out[i] = (delta.days * 86_400 + delta.seconds) * 10**9 + delta.microseconds * 1_000
    return out


def read_csv(path: Path, *, sep: str, time_column: str, value_columns: list[str]) -> CsvSeries:
    """Read ``path``. Raises :class:`ValueFormatError` naming the file and line, or a missing column."""
    if len(sep) != 1:
        raise ValueFormatError(f"--sep must be one character, not {sep!r}")
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh, delimiter=sep))
    except OSError as exc:
        raise ValueFormatError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ValueFormatError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except csv.Error as exc:
        raise ValueFormatError(f"{path}: not a readable CSV: {exc}") from None
    if not rows:
        raise ValueFormatError(f"{path}: the file is empty (no header)")
    header = [h.strip() for h in rows[0]]
    missing = [c for c in [time_column, *value_columns] if c not in header]
    if missing:
        raise ValueFormatError(
            f"{path}: no column {', '.join(repr(c) for c in missing)}; the header has "
            f"{', '.join(repr(h) for h in header)} (separator {sep!r})"
        )
    if len(set(value_columns)) != len(value_columns):
        raise ValueFormatError("a --value-column is given twice")
    ti = header.index(time_column)
    vis = [header.index(c) for c in value_columns]
    body = rows[1:]
    while body and not any(cell.strip() for cell in body[-1]):
        body.pop()  # trailing blank lines
    width = len(header)
    for i, r in enumerate(body):
        if len(r) != width:
            raise _fail(path, i + 2, f"{len(r)} fields, the header has {width}")
    time_text = [r[ti] for r in body]
    times = parse_times(time_text, path)
    n, m = len(body), len(vis)
    values = np.full((n, m), np.nan)
    present = np.zeros((n, m), dtype=bool)
    for j, vi in enumerate(vis):
        cells = [r[vi].strip() for r in body]
        has = np.array([c != "" for c in cells], dtype=bool)
        try:
            col = np.array([c if c else "nan" for c in cells], dtype=np.float64)
        except ValueError:
            for i, c in enumerate(cells):
                try:
                    float(c or "nan")
                except ValueError:
                    raise _fail(path, i + 2, f"{value_columns[j]!r} value {c!r} is not a number") from None
            raise  # pragma: no cover - one of the cells failed above
        values[:, j] = col
        present[:, j] = has
    return CsvSeries(path, time_column, tuple(value_columns), time_text, times, values, present)
