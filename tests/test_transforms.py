"""EdgeX resource transforms, worked by hand from device-sdk-go v3.1.1 (and v4.0.1 for the ``v4``
shift convention), assertion, mappings and write checks."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from edgeflow.errors import ValueFormatError, WriteRejectedError
from edgeflow.model import ValueType
from edgeflow.profiles import (
    NAN,
    OVERFLOW,
    DeviceProfile,
    DeviceResource,
    ResourceProperties,
    TransformResult,
    apply_mappings,
    check_assertion,
    check_write,
    go_value_string,
    load_profile,
    process_read,
    read_value_type,
    transform_read,
    transform_write,
)


def res(vt: str, rw: str = "RW", **props: Any) -> DeviceResource:
    return DeviceResource(name="r", properties=ResourceProperties(value_type=vt, read_write=rw, **props))


def read(vt: str, value: Any, **kw: Any) -> TransformResult:
    conv = kw.pop("conv", "v3")
    mode = kw.pop("mode", "edgex")
    return transform_read(res(vt, **kw), value, shift_convention=conv, mode=mode)


# --------------------------------------------------------------------------------------------------
# Read: scale, offset, base in the resource's own type
# --------------------------------------------------------------------------------------------------


def test_int16_fractional_scale_truncates_to_zero() -> None:
    # v * int16(0.1): the float64 check 10 * 0.1 = 1.0 passes, the integer factor is 0
    assert read("Int16", 10, scale=0.1) == TransformResult(0, ValueType.INT16)
    assert read("Int16", 0, scale=0.1) == TransformResult(0, ValueType.INT16)
    # 3 * 0.1 = 0.30000000000000004 is not integral: the range check calls it an overflow
    assert read("Int16", 3, scale=0.1) == TransformResult(OVERFLOW, ValueType.STRING, OVERFLOW)


def test_float32_with_scale_is_how_edgex_scales(shared_data: Path) -> None:
    room = load_profile(shared_data / "edgex" / "modbus.test.device.profile.yml").resource("RoomTemperature")
    # the connector hands the Int16 register already cast to float (rawType Int16 → Float32)
    assert transform_read(room, 215.0) == TransformResult(21.5, ValueType.FLOAT32)
    assert transform_read(room, -45.0) == TransformResult(-4.5, ValueType.FLOAT32)
    r = transform_read(room, 1.0)
    assert r.value == pytest.approx(0.1, rel=1e-7)
    assert r.value == float(__import__("numpy").float32(0.1))  # float32 arithmetic, not float64


def test_integer_scale_offset_and_overflow() -> None:
    assert read("Int16", 7, scale=3) == TransformResult(21, ValueType.INT16)
    assert read("Int8", 100, scale=2).special == OVERFLOW  # 200 does not fit Int8
    assert read("Int8", -128, scale=-1).special == OVERFLOW  # 128 does not fit either
    assert read("Int16", 10, offset=-3) == TransformResult(7, ValueType.INT16)
    assert read("Int16", 10, offset=0.5).special == OVERFLOW  # 10.5 not integral
    assert read("Uint8", 0, offset=-1).special == OVERFLOW
    assert read("Uint8", 250, offset=5) == TransformResult(255, ValueType.UINT8)
    assert read("Uint8", 251, offset=5).special == OVERFLOW
    assert read("Float32", 1e10, scale=1e30).special == OVERFLOW  # beyond MaxFloat32
    assert read("Float64", 1e300, scale=1e300).special == OVERFLOW  # +Inf


def test_uint64_edge_follows_go_float_rounding() -> None:
    # float64(MaxUint64) + 1 == 2**64 == float64(MaxUint64): the check passes and Go's uint64 add wraps
    assert read("Uint64", 2**64 - 1, offset=1) == TransformResult(0, ValueType.UINT64)


def test_base() -> None:
    assert read("Float64", 2, base=10) == TransformResult(100.0, ValueType.FLOAT64)
    assert read("Uint8", 7, base=2) == TransformResult(128, ValueType.UINT8)
    assert read("Uint8", 8, base=2).special == OVERFLOW  # 256
    assert read("Int16", 1, base=1.5).special == OVERFLOW  # 1.5 not integral
    assert read("Float64", 0.5, base=-8).special == OVERFLOW  # Pow(-8, 0.5) is NaN


def test_step_order_base_scale_offset() -> None:
    # 2**3 = 8, times 3 = 24, plus 1 = 25 (any other order gives something else)
    assert read("Float64", 3.0, base=2, scale=3, offset=1) == TransformResult(25.0, ValueType.FLOAT64)


def test_defaults_are_skipped() -> None:
    assert read("Int16", 7, mask=0, shift=0, base=0, scale=1, offset=0) == TransformResult(7, ValueType.INT16)
    assert read("Float64", math.inf) == TransformResult(math.inf, ValueType.FLOAT64)  # no step, no check


def test_nan_reading() -> None:
    assert read("Float64", math.nan) == TransformResult(NAN, ValueType.STRING, NAN)
    assert read("Float32", math.nan, scale=2) == TransformResult(NAN, ValueType.STRING, NAN)


def test_non_numeric_types_pass_through() -> None:
    assert read("String", "abc", scale=2) == TransformResult("abc", ValueType.STRING)
    assert read("Bool", True) == TransformResult(True, ValueType.BOOL)
    assert read("Float32Array", [1.0], scale=2) == TransformResult([1.0], ValueType.FLOAT32_ARRAY)


@pytest.mark.parametrize(
    ("vt", "value"), [("Int16", "12"), ("Int16", 40000), ("Uint8", -1), ("Int8", 1.5), ("Float64", True)]
)
def test_raw_value_of_the_wrong_type(vt: str, value: Any) -> None:
    with pytest.raises(ValueFormatError):
        read(vt, value)


# --------------------------------------------------------------------------------------------------
# Read: mask and shift
# --------------------------------------------------------------------------------------------------


def test_mask_then_shift_v3_negative_is_right() -> None:
    assert read("Uint16", 0xABCD, mask=0xFF00, shift=-8) == TransformResult(0xAB, ValueType.UINT16)
    # mask first: (0xABCD & 0x00F0) >> 4 = 0xC; shifting first would give 0xB
    assert read("Uint16", 0xABCD, mask=0x00F0, shift=-4).value == 0xC


def test_v3_positive_shift_is_left_and_wraps() -> None:
    assert read("Uint8", 0x0F, shift=4).value == 0xF0
    assert read("Uint8", 0x81, shift=1).value == 0x02  # the top bit falls off, as in Go
    assert read("Uint32", 1, shift=40).value == 0  # a count >= width gives 0
    assert read("Uint8", 0xFF, mask=0x1FF).value == 0xFF  # mask truncated to the type


def test_v4_positive_shift_is_right() -> None:
    assert read("Uint16", 0xABCD, mask=0xFF00, shift=8, conv="v4").value == 0xAB
    assert read("Uint8", 0xF0, shift=4, conv="v4").value == 0x0F
    assert read("Uint8", 0x0F, shift=-4, conv="v4").value == 0xF0


def test_mask_and_shift_on_signed_ints_only_in_v4() -> None:
    assert read("Int16", 0x1234, mask=0xFF, shift=-4).value == 0x1234  # v3: unsigned only
    assert read("Int16", 0x1234, mask=0xFF, conv="v4").value == 0x34
    assert read("Int8", -128, shift=1, conv="v4").value == -64  # arithmetic right shift
    assert read("Int8", 64, shift=-1, conv="v4").value == -128  # left shift wraps


def test_impossible_shift_count() -> None:
    with pytest.raises(ValueFormatError, match="shift 200"):
        read("Uint8", 1, shift=200)  # int8(200) < 0: Go panics


# --------------------------------------------------------------------------------------------------
# Float mode
# --------------------------------------------------------------------------------------------------


def test_float_mode_keeps_fractions() -> None:
    r = res("Int16", scale=0.1)
    assert read_value_type(r) is ValueType.INT16
    assert read_value_type(r, mode="float") is ValueType.FLOAT64
    assert transform_read(r, 215, mode="float") == TransformResult(21.5, ValueType.FLOAT64)
    assert read("Uint16", 0xAB00, mask=0xFF00, shift=-8, offset=0.5, mode="float") == TransformResult(
        171.5, ValueType.FLOAT64
    )
    assert read("Int16", 5, mode="float") == TransformResult(5, ValueType.INT16)  # nothing to scale
    assert read("Float32", 1e30, scale=1e10, mode="float").special == OVERFLOW
    assert transform_write(r, 21.54, mode="float") == 215
    with pytest.raises(WriteRejectedError, match="does not fit Int16"):
        transform_write(r, 1e6, mode="float")
    # an integer resource with nothing to scale is written as the exact int, even beyond 2**53
    big = transform_write(res("Uint64"), 2**63 + 5, mode="float")
    assert big == 2**63 + 5 and isinstance(big, int)


# --------------------------------------------------------------------------------------------------
# Write
# --------------------------------------------------------------------------------------------------


def test_write_inverts_offset_scale_base() -> None:
    assert transform_write(res("Float32", scale=0.1), 21.5) == 215.0
    assert transform_write(res("Int16", offset=10), 15) == 5
    assert transform_write(res("Int16", scale=2), 8) == 4
    assert transform_write(res("Float64", base=10), 100.0) == pytest.approx(2.0)
    assert transform_write(res("String"), "x") == "x"


def test_write_rejections() -> None:
    with pytest.raises(WriteRejectedError, match="does not fit Int16"):
        transform_write(res("Int16", scale=2), 7)  # 3.5
    with pytest.raises(WriteRejectedError, match="truncates to 0"):
        transform_write(res("Int16", scale=0.1), 2)  # v / int16(0.1): a division by zero in Go
    with pytest.raises(WriteRejectedError, match="does not fit Float64"):
        transform_write(res("Float64", base=10), -1.0)  # log of a negative number
    with pytest.raises(WriteRejectedError) as ei:
        transform_write(res("Int8"), 300)
    assert ei.value.resource == "r"


def test_write_shift_and_mask_per_convention() -> None:
    r = res("Uint16", mask=0xFF00, shift=8)
    assert transform_write(r, 0xAB, shift_convention="v4") == 0xAB00  # shift back left, then mask
    assert transform_write(r, 0xAB, shift_convention="v3") == 0xAB  # v3.1.1 writes neither
    rv4 = res("Uint16", mask=0xFF00, shift=8)
    raw = transform_write(rv4, 0x12, shift_convention="v4")
    assert transform_read(rv4, raw, shift_convention="v4").value == 0x12


def test_check_write(shared_data: Path) -> None:
    p = load_profile(shared_data / "edgex" / "modbus.test.device.profile.yml")
    with pytest.raises(WriteRejectedError, match="read-only") as ei:
        check_write(p.resource("RoomTemperature"), 21.5)
    assert ei.value.resource == "RoomTemperature"
    fan = p.resource("FanSpeed")  # Int32, minimum 0, maximum 9
    assert check_write(fan, 9) == 9
    assert check_write(fan, "5") == 5
    assert check_write(fan, 5.0) == 5
    with pytest.raises(WriteRejectedError, match="above maximum 9"):
        check_write(fan, 10)
    with pytest.raises(WriteRejectedError, match="below minimum 0"):
        check_write(fan, -1)
    with pytest.raises(WriteRejectedError, match="not a valid Int32"):
        check_write(fan, "fast")
    with pytest.raises(WriteRejectedError, match="not a valid Int32"):
        check_write(fan, 2**40)
    switch = p.resource("SwitchA")
    assert check_write(switch, "true") is True
    assert check_write(switch, False) is False
    with pytest.raises(WriteRejectedError):
        check_write(switch, 1)
    assert check_write(res("Object"), {"a": 1}) == {"a": 1}
    assert check_write(res("String"), "hi") == "hi"
    assert check_write(res("Float32", maximum=1.5), "1.5") == 1.5
    with pytest.raises(WriteRejectedError, match="overflows Float32"):
        check_write(res("Float32"), "1e39")
    assert check_write(res("Int16", maximum=9.5), 9) == 9  # the bound is truncated to Int16, as in Go
    with pytest.raises(WriteRejectedError):
        check_write(res("Int16", maximum=9.5), 10)


# --------------------------------------------------------------------------------------------------
# Assertion and mappings
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("vt", "value", "text"),
    [
        (ValueType.BOOL, True, "true"),
        (ValueType.INT16, -7, "-7"),
        (ValueType.FLOAT32, 21.5, "21.5"),
        (ValueType.FLOAT32, 0.1, "0.1"),  # shortest float32 digits, not 0.10000000149011612
        (ValueType.FLOAT64, 1e6, "1e+06"),
        (ValueType.FLOAT64, 123456.0, "123456"),
        (ValueType.FLOAT64, 1234567.0, "1.234567e+06"),
        (ValueType.FLOAT64, 0.0001, "0.0001"),
        (ValueType.FLOAT64, 0.00001, "1e-05"),
        (ValueType.FLOAT64, -2.5e-7, "-2.5e-07"),
        (ValueType.FLOAT64, math.inf, "+Inf"),
        (ValueType.STRING, "overflow", "overflow"),
        (ValueType.UINT8_ARRAY, [1, 2], "[1 2]"),
    ],
)
def test_go_value_string(vt: ValueType, value: Any, text: str) -> None:
    assert go_value_string(vt, value) == text


def test_mappings_from_the_modbus_profile(shared_data: Path) -> None:
    p = load_profile(shared_data / "edgex" / "modbus.test.device.profile.yml")
    switch = p.command("Switch")
    hvac = p.command("HVACValues")
    assert apply_mappings(switch, "SwitchA", go_value_string(ValueType.BOOL, True)) == "ON"
    assert apply_mappings(switch, "SwitchB", "false") == "OFF"
    assert apply_mappings(hvac, "FanSpeed", "9") == "VAMHiFreshUp"
    assert apply_mappings(hvac, "OperationMode", "7") is None  # not in the enum: passes through unchanged
    assert apply_mappings(hvac, "Temperature", "21.5") is None  # no mappings on this operation
    assert apply_mappings(switch, "FanSpeed", "1") is None  # resource not in this command
    assert apply_mappings(None, "SwitchA", "true") is None


def test_assertion() -> None:
    r = res("Int16", assertion="0")
    assert check_assertion(r, transform_read(r, 0))
    assert not check_assertion(r, transform_read(r, 1))
    f = res("Float32", assertion="25.5")
    assert check_assertion(f, transform_read(f, 25.5))
    assert check_assertion(res("Int16"), TransformResult(5, ValueType.INT16))  # no assertion


# --------------------------------------------------------------------------------------------------
# Properties: write ∘ read ≈ identity for float types
# --------------------------------------------------------------------------------------------------

_MAG = st.floats(min_value=1e-3, max_value=1e3)
_SCALE = st.builds(lambda m, neg: -m if neg else m, _MAG, st.booleans())
_VALUE = st.floats(min_value=-1e6, max_value=1e6)


@given(_VALUE, _SCALE, st.floats(min_value=-1e4, max_value=1e4))
def test_float64_scale_offset_round_trip(v: float, scale: float, offset: float) -> None:
    r = res("Float64", scale=scale, offset=offset)
    out = transform_read(r, v)
    assert out.special is None
    back = transform_write(r, out.value)
    assert math.isclose(back, v, rel_tol=1e-12, abs_tol=1e-12 * (abs(offset / scale) + 1))


@given(st.floats(min_value=-30, max_value=30), st.floats(min_value=1.1, max_value=10))
def test_float64_base_round_trip(v: float, base: float) -> None:
    r = res("Float64", base=base)
    out = transform_read(r, v)
    assume(out.special is None and out.value > 0)
    assert math.isclose(transform_write(r, out.value), v, rel_tol=1e-12, abs_tol=1e-12)


@given(st.floats(min_value=-1e4, max_value=1e4, width=32), _SCALE, st.floats(min_value=-100, max_value=100))
def test_float32_scale_offset_round_trip(v: float, scale: float, offset: float) -> None:
    r = res("Float32", scale=scale, offset=offset)
    out = transform_read(r, v)
    assert out.special is None
    back = transform_write(r, out.value)
    # four float32 roundings, each relative 2**-24, on magnitudes up to |v|, |offset/scale|
    assert math.isclose(back, v, rel_tol=4e-7, abs_tol=4e-7 * (abs(offset / scale) + abs(v) + 1e-3))


@given(st.integers(-1000, 1000), _SCALE, st.floats(min_value=-100, max_value=100))
def test_float_mode_int_round_trip(v: int, scale: float, offset: float) -> None:
    r = res("Int32", scale=scale, offset=offset)
    out = transform_read(r, v, mode="float")
    assert out.value_type is ValueType.FLOAT64
    assert transform_write(r, out.value, mode="float") == v


def test_process_read_runs_the_sdk_order(shared_data: Path) -> None:
    p = load_profile(shared_data / "edgex" / "modbus.test.device.profile.yml")
    on = process_read(p, "SwitchA", True)
    assert on == TransformResult("ON", ValueType.STRING, mapped=True)
    # SwitchB is read on its own: the mappings come from the profile-wide lookup
    assert process_read(p, "SwitchB", False).value == "OFF"
    assert process_read(p, "OperationMode", 10, command="HVACValues").value == "VAM Heat"
    assert process_read(p, "OperationMode", 7) == TransformResult(7, ValueType.INT16)  # unmapped: unchanged
    assert process_read(p, "RoomTemperature", 215.0) == TransformResult(21.5, ValueType.FLOAT32)
    guarded = res("Int16", assertion="1")
    prof = DeviceProfile(name="g", device_resources=[guarded])
    assert process_read(prof, "r", 0).assertion_failed
    assert not process_read(prof, guarded, 1).assertion_failed
    with pytest.raises(KeyError):
        process_read(p, "Nope", 1)
