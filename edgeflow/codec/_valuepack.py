"""Exact, safe serialisation of non-numeric reading values for the ``compact`` encoding.

Values are what :class:`~edgeflow.model.ReadingBatch` carries in ``objects``: strings, bools, integers of
any size, floats (NaN and infinities included, bit for bit), ``bytes`` (Binary readings), lists and
tuples (arrays; read back as lists), dicts with string keys (Object readings) and ``None``. Nothing is
ever evaluated or unpickled; a tag byte says what follows, and nesting is limited.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np

from edgeflow.codec._varint import Reader, Writer
from edgeflow.errors import CodecError

__all__ = ["pack_value", "unpack_value"]

_NONE: Final = 0
_FALSE: Final = 1
_TRUE: Final = 2
_INT: Final = 3  # zigzag varint (fits int64)
_BIGINT: Final = 4  # decimal text
_FLOAT: Final = 5  # 8 bytes little-endian
_STR: Final = 6
_BYTES: Final = 7
_LIST: Final = 8
_DICT: Final = 9

_MAX_DEPTH: Final = 64
_I64_MIN: Final = -(2**63)
_I64_MAX: Final = 2**63 - 1


def pack_value(w: Writer, value: Any, depth: int = 0) -> None:
    """Append ``value`` to ``w``. Raises :class:`CodecError` for a type that has no wire form."""
    if depth > _MAX_DEPTH:
        raise CodecError(f"value nests deeper than {_MAX_DEPTH} levels")
    if value is None:
        w.byte(_NONE)
    elif isinstance(value, bool | np.bool_):
        w.byte(_TRUE if value else _FALSE)
    elif isinstance(value, int | np.integer):
        i = int(value)
        if _I64_MIN <= i <= _I64_MAX:
            w.byte(_INT)
            w.sint(i)
        else:
            w.byte(_BIGINT)
            w.text(str(i))
    elif isinstance(value, float | np.floating):
        w.byte(_FLOAT)
        w.f64(float(value))
    elif isinstance(value, str):
        w.byte(_STR)
        w.text(value)
    elif isinstance(value, bytes | bytearray | memoryview):
        w.byte(_BYTES)
        w.blob(bytes(value))
    elif isinstance(value, list | tuple | np.ndarray):
        items = list(value)
        w.byte(_LIST)
        w.uint(len(items))
        for item in items:
            pack_value(w, item, depth + 1)
    elif isinstance(value, dict):
        w.byte(_DICT)
        w.uint(len(value))
        for k, v in value.items():
            if not isinstance(k, str):
                raise CodecError(f"object keys must be strings, not {type(k).__name__}")
            w.text(k)
            pack_value(w, v, depth + 1)
    else:
        raise CodecError(f"cannot encode a reading value of type {type(value).__name__}")


def unpack_value(r: Reader, depth: int = 0) -> Any:
    """Read one value written by :func:`pack_value`."""
    if depth > _MAX_DEPTH:
        raise CodecError(f"value nests deeper than {_MAX_DEPTH} levels")
    tag = r.byte()
    if tag == _NONE:
        return None
    if tag == _FALSE:
        return False
    if tag == _TRUE:
        return True
    if tag == _INT:
        return r.sint()
    if tag == _BIGINT:
        text = r.text()
        try:
            return int(text, 10)
        except ValueError:
            raise CodecError(f"bad big integer {text[:40]!r}") from None
    if tag == _FLOAT:
        return r.f64()
    if tag == _STR:
        return r.text()
    if tag == _BYTES:
        return r.blob()
    if tag == _LIST:
        n = r.count(r.remaining)  # every item takes at least one byte
        return [unpack_value(r, depth + 1) for _ in range(n)]
    if tag == _DICT:
        n = r.count(r.remaining // 2)
        out: dict[str, Any] = {}
        for _ in range(n):
            k = r.text()
            out[k] = unpack_value(r, depth + 1)
        return out
    raise CodecError(f"unknown value tag {tag}")
