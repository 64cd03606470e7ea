"""Every value type, swap combination and table, against registers written by hand on a real pymodbus
server; and writes that round-trip to exactly those registers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from connectors.modbus import ModbusConnector
from edgeflow.errors import WriteRejectedError
from edgeflow.profiles import Device, DeviceProfile, DeviceResource

pytestmark = pytest.mark.server

PI32 = 3.1415927410125732  # float32 nearest to pi, 0x40490FDB
PI64 = 3.141592653589793  # 0x400921FB54442D18


@dataclass(frozen=True)
class Case:
    name: str
    value_type: str
    registers: tuple[int, ...]  # as the device holds them
    expected: Any
    raw_type: str | None = None
    byte_swap: bool = False
    word_swap: bool = False
    string_size: int | None = None
    written: tuple[int, ...] | None = None  # what a write of ``expected`` stores, where not ``registers``

    def attributes(self, table: str, address: int) -> dict[str, Any]:
        attrs: dict[str, Any] = {"primaryTable": table, "startingAddress": address}
        if self.raw_type:
            attrs["rawType"] = self.raw_type
        if self.byte_swap:
            attrs["isByteSwap"] = True
        if self.word_swap:
            attrs["isWordSwap"] = "true"  # EdgeX allows strings
        if self.string_size:
            attrs["stringRegisterSize"] = self.string_size
        return attrs


SWAPS = [(False, False), (True, False), (False, True), (True, True)]


def _cases() -> list[Case]:
    cases = [
        Case("i16", "Int16", (0xFF38,), -200),
        Case("u16", "Uint16", (0xFF38,), 65336),
        Case("i16_swapflags_ignored", "Int16", (0x1234,), 0x1234, byte_swap=True, word_swap=True),
        Case("i64", "Int64", (0x0102, 0x0304, 0x0506, 0x0708), 0x0102030405060708),
        Case(
            "i64_neg_swapflags_ignored",
            "Int64",
            (0xFFFF, 0xFFFF, 0xFFFF, 0xFF38),
            -200,
            byte_swap=True,
            word_swap=True,
        ),
        Case("u64", "Uint64", (0xFFFF, 0xFFFF, 0xFFFF, 0xFF38), 18446744073709551416),
        Case("f64", "Float64", (0x4009, 0x21FB, 0x5444, 0x2D18), PI64),
        Case(
            "f64_swapflags_ignored",
            "Float64",
            (0x4009, 0x21FB, 0x5444, 0x2D18),
            PI64,
            byte_swap=True,
            word_swap=True,
        ),
        Case("raw_i16_f32", "Float32", (0xFF38,), -200.0, raw_type="Int16"),
        Case("raw_u16_f32", "Float32", (0xFF38,), 65336.0, raw_type="Uint16"),
        Case("raw_i16_f64", "Float64", (0x00D7,), 215.0, raw_type="INT16"),
        Case("raw_u16_f64", "Float64", (0x8000,), 32768.0, raw_type="uint16"),
        Case("string", "String", (0x4845, 0x4C4C, 0x4F00, 0x0000), "HELLO", string_size=4),
        Case(
            "string_nul_both_ends",
            "String",
            (0x0000, 0x6162, 0x6300),
            "abc",
            string_size=3,
            written=(0x6162, 0x6300, 0x0000),
        ),
    ]
    # 32-bit types: bytes ABCD as the device stores them under each swap (decoded by hand from EdgeX's
    # swap32BitDataBytes: byte swap [1,0,3,2], then word swap [2,3,0,1]).
    i32 = {  # 0x12345678
        (False, False): (0x1234, 0x5678),
        (True, False): (0x3412, 0x7856),
        (False, True): (0x5678, 0x1234),
        (True, True): (0x7856, 0x3412),
    }
    neg = {  # 0xFFFFFF38 (-200 / 4294967096)
        (False, False): (0xFFFF, 0xFF38),
        (True, False): (0xFFFF, 0x38FF),
        (False, True): (0xFF38, 0xFFFF),
        (True, True): (0x38FF, 0xFFFF),
    }
    pi = {  # 0x40490FDB
        (False, False): (0x4049, 0x0FDB),
        (True, False): (0x4940, 0xDB0F),
        (False, True): (0x0FDB, 0x4049),
        (True, True): (0xDB0F, 0x4940),
    }
    for bs, ws in SWAPS:
        tag = f"b{int(bs)}w{int(ws)}"
        cases += [
            Case(f"i32_{tag}", "Int32", i32[bs, ws], 0x12345678, byte_swap=bs, word_swap=ws),
            Case(f"i32neg_{tag}", "Int32", neg[bs, ws], -200, byte_swap=bs, word_swap=ws),
            Case(f"u32_{tag}", "Uint32", neg[bs, ws], 4294967096, byte_swap=bs, word_swap=ws),
            Case(f"f32_{tag}", "Float32", pi[bs, ws], PI32, byte_swap=bs, word_swap=ws),
            Case(
                f"raw_i32_f64_{tag}",
                "Float64",
                neg[bs, ws],
                -200.0,
                raw_type="Int32",
                byte_swap=bs,
                word_swap=ws,
            ),
        ]
    return cases


CASES = _cases()


def _layout(table: str) -> tuple[DeviceProfile, list[tuple[Case, int]]]:
    """One resource per case, 10 registers apart (one unused register or more between them)."""
    placed = [(case, 10 * i) for i, case in enumerate(CASES)]
    resources = [
        {
            "name": case.name,
            "attributes": case.attributes(table, address),
            "properties": {"valueType": case.value_type, "readWrite": "RW"},
        }
        for case, address in placed
    ]
    profile = DeviceProfile.model_validate({"name": f"types-{table}", "deviceResources": resources})
    return profile, placed


def _device(port: int, profile: DeviceProfile, framing: str = "modbus-tcp") -> Device:
    return Device(
        name="dev",
        profile_name=profile.name,
        protocols={framing: {"Address": "127.0.0.1", "Port": port, "UnitID": 1, "Timeout": "2s"}},
    )


def _check(values: list[Any], resources: list[DeviceResource], placed: list[tuple[Case, int]]) -> None:
    assert [v.resource for v in values] == [r.name for r in resources]
    for value, (case, _) in zip(values, placed, strict=True):
        assert value.value == case.expected, case.name
        assert type(value.value) is type(case.expected), case.name
        assert value.origin > 0


@pytest.mark.parametrize("table", ["HOLDING_REGISTERS", "INPUT_REGISTERS"])
@pytest.mark.parametrize("coalesce", [True, False])
async def test_every_type_and_swap(modbus_server: Any, table: str, coalesce: bool) -> None:
    server = await modbus_server()
    profile, placed = _layout(table)
    short = "hr" if table == "HOLDING_REGISTERS" else "ir"
    for case, address in placed:
        await server.set(short, address, list(case.registers))
    connector = ModbusConnector({"coalesce": coalesce, "max_gap_registers": 16})
    connector.add_device(_device(server.port, profile), profile)
    async with connector:
        values = await connector.read("dev", profile.device_resources)
    _check(values, profile.device_resources, placed)
    # 10 registers apart, 4 at most used: gap <= 9 <= 16, so coalesced reads need ceil(span / 125).
    span = 10 * (len(CASES) - 1) + 4
    fc = 3 if table == "HOLDING_REGISTERS" else 4
    assert server.counts[fc] == (-(-span // 125) if coalesce else len(CASES))


@pytest.mark.parametrize("table", ["COILS", "DISCRETE_INPUTS", "DISCRETES_INPUT"])
async def test_bools_in_bit_tables(modbus_server: Any, table: str) -> None:
    server = await modbus_server()
    pattern = {0: True, 1: False, 7: True, 8: True, 15: False, 16: True, 1999: True, 2000: True}
    profile = DeviceProfile.model_validate(
        {
            "name": "bits",
            "deviceResources": [
                {
                    "name": f"b{a}",
                    "attributes": {"primaryTable": table, "startingAddress": str(a)},
                    "properties": {"valueType": "Bool", "readWrite": "R"},
                }
                for a in pattern
            ],
        }
    )
    short = "co" if table == "COILS" else "di"
    for a, v in pattern.items():
        await server.set(short, a, [v])
    connector = ModbusConnector()
    connector.add_device(_device(server.port, profile), profile)
    async with connector:
        values = await connector.read("dev", profile.device_resources)
    assert [v.value for v in values] == list(pattern.values())
    # 0..2000 is 2001 bits: over the 2000-bit limit of one request, so exactly two.
    assert server.counts[1 if table == "COILS" else 2] == 2


async def test_bool_from_register_bits(modbus_server: Any) -> None:
    server = await modbus_server()
    await server.set("hr", 7, [0b1000_0000_0000_1000])
    resources = [
        ("bit3", "7.3", True),
        ("bit2", "7.2", False),
        ("bit15", "7.15", True),
        ("bit0", 7, False),  # no bit: bit 0, as EdgeX
    ]
    profile = DeviceProfile.model_validate(
        {
            "name": "regbits",
            "deviceResources": [
                {
                    "name": n,
                    "attributes": {"primaryTable": "HOLDING_REGISTERS", "startingAddress": a},
                    "properties": {"valueType": "Bool", "readWrite": "RW"},
                }
                for n, a, _ in resources
            ],
        }
    )
    connector = ModbusConnector()
    connector.add_device(_device(server.port, profile), profile)
    async with connector:
        values = await connector.read("dev", profile.device_resources)
        assert [v.value for v in values] == [e for _, _, e in resources]
        assert server.counts[3] == 1
        # write one bit: read-modify-write keeps the others
        await connector.write("dev", [(profile.resource("bit2"), True), (profile.resource("bit15"), False)])
        assert await server.get("hr", 7, 1) == [0b0000_0000_0000_1100]


async def test_writes_round_trip_to_the_same_registers(modbus_server: Any) -> None:
    server = await modbus_server()
    profile, placed = _layout("HOLDING_REGISTERS")
    connector = ModbusConnector()
    connector.add_device(_device(server.port, profile), profile)
    async with connector:
        await connector.write("dev", [(profile.resource(c.name), c.expected) for c, _ in placed])
        for case, address in placed:
            expect = list(case.written or case.registers)
            assert await server.get("hr", address, len(expect)) == expect, case.name
        values = await connector.read("dev", profile.device_resources)
    for value, (case, _) in zip(values, placed, strict=True):
        assert value.value == case.expected, case.name
    # one register: function 6; more: function 16 (as EdgeX)
    singles = sum(1 for c, _ in placed if len(c.registers) == 1)
    assert server.counts[6] == singles
    assert server.counts[16] == len(placed) - singles


async def test_write_coils_strings_and_edge_values(modbus_server: Any) -> None:
    server = await modbus_server()
    profile = DeviceProfile.model_validate(
        {
            "name": "w",
            "deviceResources": [
                {
                    "name": "coil",
                    "attributes": {"primaryTable": "COILS", "startingAddress": 3},
                    "properties": {"valueType": "Bool", "readWrite": "RW"},
                },
                {
                    "name": "text",
                    "attributes": {
                        "primaryTable": "HOLDING_REGISTERS",
                        "startingAddress": 20,
                        "stringRegisterSize": 2,
                    },
                    "properties": {"valueType": "String", "readWrite": "RW"},
                },
                {
                    "name": "temp",
                    "attributes": {
                        "primaryTable": "HOLDING_REGISTERS",
                        "startingAddress": 30,
                        "rawType": "Int16",
                    },
                    "properties": {"valueType": "Float32", "readWrite": "RW", "scale": 0.1},
                },
                {
                    "name": "ro",
                    "attributes": {"primaryTable": "INPUT_REGISTERS", "startingAddress": 1},
                    "properties": {"valueType": "Int16", "readWrite": "RW"},
                },
            ],
        }
    )
    connector = ModbusConnector()
    connector.add_device(_device(server.port, profile), profile)
    async with connector:
        await connector.write("dev", [(profile.resource("coil"), True)])
        assert await server.get("co", 3, 1) == [True]
        await connector.write("dev", [(profile.resource("coil"), "false")])
        assert await server.get("co", 3, 1) == [False]
        assert server.counts[5] == 2
        # strings are truncated to stringRegisterSize registers, and padded with NUL
        await connector.write("dev", [(profile.resource("text"), "ABCDEFG")])
        assert await server.get("hr", 20, 2) == [0x4142, 0x4344]
        await connector.write("dev", [(profile.resource("text"), "Z")])
        assert await server.get("hr", 20, 2) == [0x5A00, 0x0000]
        # the service divides by the scale: 21.7 / 0.1 = 216.99999999999997 is written as 217, not 216
        await connector.write("dev", [(profile.resource("temp"), 21.7 / 0.1)])
        assert await server.get("hr", 30, 1) == [217]
        await connector.write("dev", [(profile.resource("temp"), -2.5)])  # halves away from zero
        assert await server.get("hr", 30, 1) == [0xFFFD]
        await connector.write("dev", [(profile.resource("temp"), 2.5)])
        assert await server.get("hr", 30, 1) == [3]
        await connector.write("dev", [(profile.resource("temp"), 21.7 / 0.1)])
        with pytest.raises(WriteRejectedError, match="Int16") as info:
            await connector.write("dev", [(profile.resource("temp"), 40000.0)])
        assert info.value.device == "dev"
        assert info.value.resource == "temp"
        with pytest.raises(WriteRejectedError, match="read-only"):
            await connector.write("dev", [(profile.resource("ro"), 1)])
        with pytest.raises(WriteRejectedError, match="not a Bool"):
            await connector.write("dev", [(profile.resource("coil"), "maybe")])
    assert await server.get("hr", 30, 1) == [217]
