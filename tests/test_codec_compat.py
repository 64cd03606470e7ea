"""A receiver reads what an older edge sent: payloads written by earlier encoders, kept as bytes.

Each payload below was produced by the encoder of its version (compact version 1 with a non-numeric
reading; version 2 naming its own series; version 2 carrying the stream's series table, and the next
message referring to that table by hash) before the value coding changed; then the same with the chained
values and column-by-column tables. They must decode to the same readings with every later decoder."""

from __future__ import annotations

import numpy as np
import pytest

from edgeflow.codec import DecodedSeries, SeriesTables, decode
from edgeflow.codec._compact import decode_compact
from edgeflow.model import ValueType

T0 = 1_700_000_000_000_000_000
TEMP_T = [T0, T0 + 1_000_000_123, T0 + 2_000_000_456]
TEMP_V = [21.5, 21.75, 22.0]
PRES_T = [T0, T0 + 1_000_000_123]
PRES_V = [1.013, 1.02]

V2_LOCAL = bytes.fromhex(
    "45464302080b6f6c642d656467652d7632000606626f696c657208707265737375726506426f696c657203626172"
    "0b74656d7065726174757265014302000102030100040205040b0b020201010003020203018080d0e2c6bfce972f"
    "00f6a9d6b907a40300f6a9d6b907cc213232e1110e"
)
V2_WITH_TABLE = bytes.fromhex(
    "45464302040c6f6c642d656467652d746162003948c3243d84c0ae0606626f696c657208707265737375726506426f"
    "696c6572036261720b74656d7065726174757265014302000102030100040205040b0b020201000003020203018080"
    "d0e2c6bfce972f00f6a9d6b907a40300f6a9d6b907cc213232e1110e"
)
V2_BY_HASH = bytes.fromhex(
    "45464302000c6f6c642d656467652d746162013948c3243d84c0ae020201000002010202cd96ebdc03f6a9a69cce"
    "bfce972f000200fe2132b120"
)
# version 2 with flag bits 4 and 5 (first values chained per digit count, tables column by column)
V2_COLUMNS_WITH_TABLE = bytes.fromhex(
    "45464302340c656467652d76322d636f6c7300ba7d63a1eb20ad150606626f696c657208707265737375726506426f"
    "696c6572036261720b74656d7065726174757265014302000002060400060402060b0b020201000003020203018080"
    "d0e2c6bfce972f00f6a9d6b907a40300f6a9d6b907cc213232ea0f0e"
)
V2_COLUMNS_BY_HASH = bytes.fromhex(
    "45464302300c656467652d76322d636f6c7301ba7d63a1eb20ad15020201000002010202cd96ebdc03f6a9a69ccebf"
    "ce972f000200fe2132b120"
)
V1_OBJECTS = bytes.fromhex(
    "45464301020b6f6c642d656467652d76310028b52ffd208ae5030032c71b25a0291de3beced6e65af4a1a3e20abe77"
    "5984f4121c10fb80334e0388ecbb114236d99224198ae548adcc0025f5fac87f62341c95c1628244261249ca5fbd79"
    "9c663d996216954f765d9e9aece2412d6cf0310401bbc8ab1ba4dbf1bd6d760c2faced085b2fbb85ac378188a00508"
    "03004050c3e50ebba618"
)


def _by_key(payload: bytes, tables: SeriesTables | None = None) -> dict[tuple[str, str], DecodedSeries]:
    b = decode(payload) if tables is None else decode_compact(payload, tables)
    return {s.key: s for s in b.series}


def test_version_2_naming_its_own_series() -> None:
    got = _by_key(V2_LOCAL)
    temp, pres = got[("boiler", "temperature")], got[("boiler", "pressure")]
    assert temp.interpolation == "linear" and pres.interpolation == "hold"
    assert temp.info.units == "C" and temp.info.profile == "Boiler"
    assert temp.origins.tolist() == TEMP_T and temp.values.tolist() == TEMP_V
    assert pres.origins.tolist() == PRES_T and pres.values.tolist() == PRES_V


def test_version_2_with_the_stream_table_then_by_hash() -> None:
    tables = SeriesTables()
    first = _by_key(V2_WITH_TABLE, tables)
    assert first[("boiler", "temperature")].values.tolist() == TEMP_V
    later = _by_key(V2_BY_HASH, tables)
    temp, pres = later[("boiler", "temperature")], later[("boiler", "pressure")]
    assert temp.origins.tolist() == TEMP_T[1:] and temp.values.tolist() == TEMP_V[1:]
    assert pres.origins.tolist() == PRES_T[1:] and pres.values.tolist() == PRES_V[1:]
    assert decode_compact(V2_BY_HASH, tables).stream_id == "old-edge-tab"


def test_version_2_with_chained_values_and_column_tables() -> None:
    tables = SeriesTables()
    first = _by_key(V2_COLUMNS_WITH_TABLE, tables)
    assert first[("boiler", "temperature")].values.tolist() == TEMP_V
    assert first[("boiler", "pressure")].origins.tolist() == PRES_T
    assert first[("boiler", "pressure")].info.units == "bar"
    later = _by_key(V2_COLUMNS_BY_HASH, tables)
    assert later[("boiler", "temperature")].values.tolist() == TEMP_V[1:]
    assert later[("boiler", "pressure")].values.tolist() == PRES_V[1:]


def test_version_1_with_a_non_numeric_reading() -> None:
    got = _by_key(V1_OBJECTS)
    state = got[("pump-7", "state")]
    assert state.info.value_type is ValueType.STRING
    assert state.objects is not None and state.objects.tolist() == ["open"]
    assert state.origins.tolist() == [T0 + 1_000_000_123]
    assert np.isnan(state.values[0])
    assert got[("boiler", "pressure")].values.tolist() == [1.013]


@pytest.mark.parametrize("payload", [V2_LOCAL, V2_WITH_TABLE, V2_COLUMNS_WITH_TABLE, V1_OBJECTS])
def test_old_payloads_decode_the_same_twice(payload: bytes) -> None:
    a, b = decode(payload), decode(payload)
    assert [s.key for s in a.series] == [s.key for s in b.series]
