"""ReadPlan gives exactly what process_read gives, for any resource and any value."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from edgeflow.errors import ValueFormatError
from edgeflow.profiles import DeviceProfile, ReadPlan, TransformResult, process_read

SCALAR_TYPES = ["Bool", "String", "Uint8", "Uint16", "Int8", "Int16", "Int32", "Int64", "Uint64"]
SCALAR_TYPES += ["Float32", "Float64", "Object", "Float64Array"]

values = st.one_of(
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=5),
    st.lists(st.floats(allow_nan=False, width=32), max_size=3),
    st.none(),
)


@st.composite
def profiles(draw: st.DrawFn) -> tuple[DeviceProfile, str | None]:
    vt = draw(st.sampled_from(SCALAR_TYPES))
    props: dict[str, Any] = {"valueType": vt, "readWrite": "R"}
    for key, strat in (
        ("scale", st.sampled_from([0.1, 2, 1, -1.5])),
        ("offset", st.sampled_from([0, 3, -0.25])),
        ("base", st.sampled_from([0, 2])),
        ("mask", st.sampled_from([0, 0xFF, 0x0F])),
        ("shift", st.sampled_from([0, 1, -2])),
        ("assertion", st.sampled_from(["1", "true", "0"])),
    ):
        if draw(st.booleans()):
            props[key] = draw(strat)
    doc: dict[str, Any] = {"name": "P", "deviceResources": [{"name": "r", "properties": props}]}
    command = None
    if draw(st.booleans()):
        mappings = draw(st.sampled_from([{}, {"1": "ONE", "true": "ON"}, {"0": "zero"}]))
        doc["deviceCommands"] = [
            {
                "name": "c",
                "readWrite": "R",
                "resourceOperations": [{"deviceResource": "r", "mappings": mappings}],
            }
        ]
        command = draw(st.sampled_from(["c", None]))
    return DeviceProfile.model_validate(doc), command


def outcome(fn: Any) -> Any:
    try:
        r = fn()
    except ValueFormatError as exc:
        return ("error", str(exc))
    assert isinstance(r, TransformResult)
    value = r.value
    if isinstance(value, float) and math.isnan(value):
        value = "nan"
    return (value, type(r.value).__name__, r.value_type, r.special, r.mapped, r.assertion_failed)


@settings(max_examples=400, deadline=None)
@given(profiles(), values, st.sampled_from(["edgex", "float"]), st.sampled_from(["v3", "v4"]))
def test_read_plan_equals_process_read(
    case: tuple[DeviceProfile, str | None], value: Any, mode: str, conv: str
) -> None:
    profile, command = case
    plan = ReadPlan(profile, "r", command=command, shift_convention=conv, mode=mode)
    want = outcome(
        lambda: process_read(profile, "r", value, command=command, shift_convention=conv, mode=mode)
    )
    assert outcome(lambda: plan(value)) == want


@settings(max_examples=300, deadline=None)
@given(profiles(), values, st.sampled_from(["edgex", "float"]), st.sampled_from(["v3", "v4"]))
def test_read_plan_apply_equals_process_read(
    case: tuple[DeviceProfile, str | None], value: Any, mode: str, conv: str
) -> None:
    profile, command = case
    plan = ReadPlan(profile, "r", command=command, shift_convention=conv, mode=mode)

    def full() -> Any:
        r = process_read(profile, "r", value, command=command, shift_convention=conv, mode=mode)
        return r.value, type(r.value).__name__, r.value_type, r.assertion_failed

    def short() -> Any:
        v, vt, failed = plan.apply(value)
        return v, type(v).__name__, vt, failed

    want = outcome_of(full)
    assert outcome_of(short) == want


def outcome_of(fn: Any) -> Any:
    try:
        out = fn()
    except ValueFormatError as exc:
        return ("error", str(exc))
    if isinstance(out[0], float) and math.isnan(out[0]):
        return ("nan", *out[1:])
    if isinstance(out[0], float) and out[0] == 0:
        return (math.copysign(1.0, out[0]), *out)  # -0.0 and 0.0 differ
    return out
