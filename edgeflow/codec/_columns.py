"""Column coders of the ``compact`` encoding: timestamps and numeric values.

Timestamps: delta-of-delta of the deltas divided by their greatest common divisor, zigzag varints, so
a regular series costs one byte per reading before compression, and a step backwards in time is just a
negative delta. Origins too far apart for 64-bit deltas fall back to raw 8-byte words.

Values, in the narrowest form that gives back every bit:
* ``decimal``: values that are exact decimals with ``k`` digits after the point travel as delta-coded
  integers ``v · 10^k``; the few that are not (NaN, ±inf, -0.0, float artefacts such as
  ``74.93588199999998``) travel as exceptions with their raw 8 bytes;
* ``float32`` when every value survives a round trip through float32;
* ``float64`` otherwise, XOR-ed with the previous value and split into byte planes, so the compressor
  sees the repeated sign/exponent bytes together.

One lossy form, only when the encoder is given a ``quantum`` for the series: ``quantised`` values travel
as delta-coded integers ``round(v / q)`` and come back as ``i · q``, at most ``q / 2`` from what was sent
(non-finite values travel exactly, as exceptions).
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np
import numpy.typing as npt

from edgeflow.codec._varint import Reader, Writer, uvarint_size, zigzag
from edgeflow.errors import CodecError

__all__ = ["read_times", "read_values", "write_times", "write_values"]

_I64 = npt.NDArray[np.int64]
_F64 = npt.NDArray[np.float64]

_T_DOD: Final = 0
_T_RAW: Final = 1

_V_EMPTY: Final = 0
_V_DECIMAL: Final = 1
_V_FLOAT32: Final = 2
_V_FLOAT64: Final = 3
_V_QUANTISED: Final = 4

_MAX_DIGITS: Final = 15
_EXACT: Final = float(2**53)
#: Deltas and delta-of-deltas must stay well inside int64.
_SAFE: Final = float(2**61)


# --------------------------------------------------------------------------------------------------
# Timestamps
# --------------------------------------------------------------------------------------------------


def write_times(w: Writer, origins: _I64) -> None:
    n = len(origins)
    if n == 0:
        return
    if n > 1:
        fd = np.diff(origins.astype(np.float64))
        if np.abs(fd).max() >= _SAFE:
            _write_raw_times(w, origins)
            return
    d = np.diff(origins)
    unit = int(np.gcd.reduce(np.abs(d))) if n > 1 else 1
    unit = unit or 1
    s = d // unit
    if n > 2 and np.abs(np.diff(s.astype(np.float64))).max() >= _SAFE:
        _write_raw_times(w, origins)
        return
    w.byte(_T_DOD)
    w.sint(int(origins[0]))
    w.uint(unit)
    if n > 1:
        dod = np.empty(n - 1, dtype=np.int64)
        dod[0] = s[0]
        dod[1:] = np.diff(s)
        w.sints(dod)


def _write_raw_times(w: Writer, origins: _I64) -> None:
    w.byte(_T_RAW)
    w.raw(_planes(origins.astype("<i8").view(np.uint64), 8))


def read_times(r: Reader, n: int) -> _I64:
    if n == 0:
        return np.empty(0, dtype=np.int64)
    mode = r.byte()
    if mode == _T_RAW:
        return _unplanes(r.take(8 * n), n, 8).view(np.int64)
    if mode != _T_DOD:
        raise CodecError(f"unknown timestamp coding {mode}")
    first = r.sint()
    unit = r.uint()
    if unit == 0 or unit >= 2**63:
        raise CodecError(f"bad timestamp unit {unit}")
    out = np.empty(n, dtype=np.int64)
    out[0] = first
    if n > 1:
        dod = r.sints(n - 1)
        with np.errstate(over="ignore"):
            s = np.cumsum(dod)
            out[1:] = first + np.cumsum(s * np.int64(unit))
    return out


# --------------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------------


def _planes(u: npt.NDArray[np.uint64] | npt.NDArray[np.uint32], width: int) -> bytes:
    """Byte planes: all first bytes, then all second bytes, ..."""
    return np.ascontiguousarray(u.view(np.uint8).reshape(len(u), width).T).tobytes()


def _unplanes(raw: bytes, n: int, width: int) -> npt.NDArray[np.uint64]:
    arr = np.frombuffer(raw, dtype=np.uint8).reshape(width, n).T
    dt = np.dtype("<u8") if width == 8 else np.dtype("<u4")
    out: npt.NDArray[np.uint64] = np.ascontiguousarray(arr).view(dt).ravel().astype(np.uint64)
    return out


def _xor_prev(u: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    x = u.copy()
    x[1:] ^= u[:-1]
    return x


def _decimal_plan(v: _F64) -> tuple[int, npt.NDArray[np.bool_], _I64, int] | None:
    """Best ``k`` for the decimal coding: (k, exact mask, integers, estimated bytes); ``None`` when fewer
    than half of the values are exact decimals at any ``k``."""
    n = len(v)
    finite = np.isfinite(v) & ~((v == 0) & np.signbit(v))
    best: tuple[int, npt.NDArray[np.bool_], _I64, int] | None = None
    best_count = -1
    with np.errstate(over="ignore", invalid="ignore"):
        for k in range(_MAX_DIGITS + 1):
            scale = 10.0**k
            ints = np.rint(v * scale)
            ok = finite & (np.abs(ints) < _EXACT) & (ints / scale == v)
            count = int(ok.sum())
            if count <= best_count or count * 2 < n:
                continue
            # Exceptions repeat the previous exact integer, so they cost a zero delta.
            filled = _fill_forward(ok, np.where(ok, ints, 0.0).astype(np.int64))
            deltas = np.diff(filled, prepend=np.int64(0))
            est = uvarint_size(zigzag(deltas)) + (n - count) * 10
            best = (k, ok, filled, est)
            best_count = count
            if count == n:
                break
    return best


def _write_exceptions(w: Writer, v: _F64, ok: npt.NDArray[np.bool_]) -> None:
    exc = np.flatnonzero(~ok)
    w.uint(len(exc))
    if len(exc):
        w.uints(np.diff(exc, prepend=np.int64(0)).astype(np.uint64))
        w.raw(v[exc].astype("<f8").tobytes())


def _read_exceptions(r: Reader, n: int) -> tuple[_I64, _F64]:
    n_exc = r.count(n)
    if not n_exc:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
    exc = np.cumsum(r.uints(n_exc).astype(np.int64))
    if int(exc[-1]) >= n or (n_exc > 1 and (np.diff(exc) <= 0).any()):
        raise CodecError("bad exception positions in a value column")
    return exc, np.frombuffer(r.take(8 * n_exc), dtype="<f8").astype(np.float64)


def _fill_forward(ok: npt.NDArray[np.bool_], ints: _I64) -> _I64:
    """``ints`` with every position not ``ok`` holding the previous ok value (0 before the first)."""
    idx = np.where(ok, np.arange(len(ok)), -1)
    np.maximum.accumulate(idx, out=idx)
    return np.where(idx >= 0, ints[np.maximum(idx, 0)], 0)


def write_values(w: Writer, v: _F64, quantum: float | None = None) -> None:
    n = len(v)
    if n == 0:
        w.byte(_V_EMPTY)
        return
    if quantum is not None:
        with np.errstate(over="ignore", invalid="ignore"):
            q_ints = np.rint(v / quantum)
            ok = np.isfinite(q_ints) & (np.abs(q_ints) < _EXACT)
        w.byte(_V_QUANTISED)
        w.f64(quantum)
        _write_exceptions(w, v, ok)
        w.sints(np.diff(_fill_forward(ok, np.where(ok, q_ints, 0.0).astype(np.int64)), prepend=np.int64(0)))
        return
    plan = _decimal_plan(v)
    with np.errstate(over="ignore", invalid="ignore"):
        f32_exact = bool((v.astype(np.float32).astype(np.float64).view(np.uint64) == v.view(np.uint64)).all())
    float_cost = 4 * n if f32_exact else 8 * n
    if plan is not None and plan[3] < float_cost:
        k, ok, ints, _ = plan
        w.byte(_V_DECIMAL)
        w.byte(k)
        _write_exceptions(w, v, ok)
        w.sints(np.diff(ints, prepend=np.int64(0)))
    elif f32_exact:
        w.byte(_V_FLOAT32)
        u32 = v.astype("<f4").view(np.uint32)
        x32 = u32.copy()
        x32[1:] ^= u32[:-1]
        w.raw(_planes(x32, 4))
    else:
        w.byte(_V_FLOAT64)
        w.raw(_planes(_xor_prev(v.astype("<f8").view(np.uint64)), 8))


def read_values(r: Reader, n: int) -> _F64:
    mode = r.byte()
    if mode == _V_EMPTY:
        if n:
            raise CodecError("value column is empty but readings are numeric")
        return np.empty(0, dtype=np.float64)
    if mode == _V_DECIMAL:
        k = r.byte()
        if k > _MAX_DIGITS:
            raise CodecError(f"bad decimal digit count {k}")
        exc, exc_vals = _read_exceptions(r, n)
        ints = np.cumsum(r.sints(n))
        out = ints.astype(np.float64) / (10.0**k)
        out[exc] = exc_vals
        return out
    if mode == _V_QUANTISED:
        quantum = r.f64()
        if not (math.isfinite(quantum) and quantum > 0):
            raise CodecError(f"bad quantum {quantum!r}")
        exc, exc_vals = _read_exceptions(r, n)
        with np.errstate(over="ignore"):
            out = np.cumsum(r.sints(n)).astype(np.float64) * quantum
        out[exc] = exc_vals
        return out
    if mode == _V_FLOAT32:
        x32 = _unplanes(r.take(4 * n), n, 4).astype(np.uint32)
        u32 = np.bitwise_xor.accumulate(x32)
        with np.errstate(invalid="ignore"):  # a signalling NaN from a hostile payload
            return u32.view(np.float32).astype(np.float64)
    if mode == _V_FLOAT64:
        x = _unplanes(r.take(8 * n), n, 8)
        return np.bitwise_xor.accumulate(x).view(np.float64)
    raise CodecError(f"unknown value coding {mode}")
