"""EdgeCore's DeviceTwin rules as edgeflow mirrors them, the token bucket and per-device coalescing."""

from __future__ import annotations

import numpy as np
import pytest

from edgeflow.model import ValueType
from edgeflow.twin._bucket import TokenBucket
from edgeflow.twin.mapper import Dirty
from edgeflow.twin.wire import (
    TwinValueError,
    format_twin_value,
    parse_topic,
    twin_update,
    valid_key,
    valid_typed_value,
    valid_value,
    validate_twin_update,
)


def test_value_regex_is_go_anchored() -> None:
    assert valid_value("23.5")
    assert valid_value("a-b_c.d,e:f/g@h#i")
    assert not valid_value("23.5\n")  # Python's $ would take it; Go's does not
    for bad in ("a b", "{}", "x+y", "a=b", "?", "'", '"', "é", ""):
        assert not valid_value(bad), bad
    assert valid_value("x" * 512) and not valid_value("x" * 513)
    assert valid_key("k" * 128) and not valid_key("k" * 129)


@pytest.mark.parametrize(
    ("ttype", "value", "vt", "text"),
    [
        ("float", 23.5, ValueType.FLOAT64, "23.5"),
        ("float", np.float32(23.4), ValueType.FLOAT32, "23.4"),
        ("float", 1e20, ValueType.FLOAT64, "1e20"),  # no "+": the value regex refuses it
        ("float", -1.5e-3, ValueType.FLOAT64, "-0.0015"),
        ("int", True, ValueType.BOOL, "1"),
        ("int", np.int16(-7), ValueType.INT16, "-7"),
        ("int", 3.0, ValueType.FLOAT64, "3"),
        ("boolean", False, ValueType.BOOL, "false"),
        ("boolean", 1, ValueType.INT16, "true"),
        ("string", "on", ValueType.STRING, "on"),
    ],
)
def test_format_twin_value(ttype: str, value: object, vt: ValueType, text: str) -> None:
    out = format_twin_value("dev", "twin", ttype, value, vt)
    assert out == text
    assert valid_value(out) and valid_typed_value(ttype, out)


@pytest.mark.parametrize(
    ("ttype", "value", "vt"),
    [
        ("float", float("nan"), ValueType.FLOAT64),
        ("float", float("inf"), ValueType.FLOAT64),
        ("int", 2.5, ValueType.FLOAT64),
        ("string", "two words", ValueType.STRING),
        ("string", "", ValueType.STRING),
        ("string", b"\x00", ValueType.BINARY),
        ("boolean", "maybe", ValueType.STRING),
    ],
)
def test_values_edgecore_would_refuse_are_errors_naming_device_twin_value(
    ttype: str, value: object, vt: ValueType
) -> None:
    with pytest.raises(TwinValueError) as err:
        format_twin_value("boiler-1", "temp", ttype, value, vt)
    assert "boiler-1" in str(err.value) and "temp" in str(err.value)


def test_validate_twin_update_mirrors_edgecore() -> None:
    good = twin_update({"t": ("23.5", "float"), "s": ("on", "string")}, timestamp_ms=1)
    assert validate_twin_update(good) == []
    assert validate_twin_update({"event_id": ""}) == ["Update twin error, key:twin does not exist"]
    bad_cases = [
        {"twin": {"t": {"actual": {"value": 23.5}}}},  # a JSON number
        {"twin": {"t": {"actual": {}}}},  # no value: EdgeCore dereferences nil
        {"twin": {"t": {"actual": {"value": "1"}, "metadata": {"type": "INT"}}}},  # uppercase
        {"twin": {"t": {"actual": {"value": "1"}, "metadata": {"type": "double"}}}},
        {"twin": {"t": {"actual": {"value": "x"}, "metadata": {"type": "float"}}}},
        {"twin": {"t": {"actual": {"value": "yes"}, "metadata": {"type": "boolean"}}}},
        {"twin": {"t k": {"actual": {"value": "1"}}}},
        {"timestamp": 1.5, "twin": {}},
    ]
    for doc in bad_cases:
        assert validate_twin_update(doc), doc
    # an existing twin's type wins over the message's
    assert validate_twin_update({"twin": {"t": {"actual": {"value": "x"}}}}, {"t": "int"})


def test_topics_in_both_id_forms() -> None:
    t = parse_topic("$hw/events/device/default/pump/twin/update/delta", "namespaced")
    assert t is not None and (t.ident, t.suffix) == ("default/pump", "twin/update/delta")
    t = parse_topic("$hw/events/device/pump/twin/update/delta", "name")
    assert t is not None and (t.ident, t.suffix) == ("pump", "twin/update/delta")
    assert parse_topic("$hw/events/device/pump/twin/update/delta", "namespaced") is None
    t = parse_topic("$hw/events/node/n1/membership/updated", "namespaced")
    assert t is not None and (t.kind, t.ident) == ("node", "n1")


def test_token_bucket() -> None:
    now = [0.0]
    b = TokenBucket(2.0, 3, clock=lambda: now[0])
    assert [b.try_take() for _ in range(4)] == [True, True, True, False]
    assert b.wait_time() == pytest.approx(0.5)
    now[0] = 0.5
    assert b.try_take() and not b.try_take()
    now[0] = 100.0
    assert sum(b.try_take() for _ in range(10)) == 3  # never more than the burst


def test_dirty_coalesces_per_device_in_order() -> None:
    d = Dirty()
    d.mark("a", ["t1"])
    d.mark("b", ["t1"])
    d.mark("a", ["t2", "t1"])
    assert len(d) == 2
    assert d.pop() == ("a", {"t1", "t2"})
    d.put_back("a", {"t1"})  # could not send: keeps its turn
    d.mark("a", ["t3"])
    assert d.pop() == ("a", {"t1", "t3"})
    assert d.pop() == ("b", {"t1"})
    assert d.pop() is None


def test_dirty_lingers_so_a_device_goes_out_once() -> None:
    now = [0.0]
    d = Dirty(0.5, clock=lambda: now[0])
    d.mark("a", ["t1"])
    assert d.pop() is None and d.ready_in() == 0.5
    now[0] = 0.3
    d.mark("a", ["t2"])  # the same round's other twin joins; the wait does not restart
    now[0] = 0.5
    assert d.pop() == ("a", {"t1", "t2"})
    assert d.ready_in() is None
