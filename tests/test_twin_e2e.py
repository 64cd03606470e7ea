"""The KubeEdge mapper end to end: the shared Device/DeviceModel CRDs run against a real pymodbus server,
the twin talks to the EdgeCore double over a real Mosquitto."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from edgeflow.config import parse_config
from edgeflow.runtime import Runtime
from tests.conftest import ModbusServerFactory, MosquittoBroker
from tests.edgecore_double import EdgeCoreDouble
from tests.twin_support import NODE, local_manifests, mapper_config

pytestmark = [pytest.mark.server, pytest.mark.data]

DEV = "default/temperature-instance"
DEV2 = "default/temperature-instance-2"


async def _setup(
    tmp_path: Path,
    shared_data: Path,
    mosquitto: MosquittoBroker,
    modbus_server: ModbusServerFactory,
    *,
    copies: int = 1,
    members: tuple[str, ...] = (DEV,),
    **kubeedge: Any,
) -> tuple[Runtime, EdgeCoreDouble, Any]:
    sim = await modbus_server(units=tuple(range(1, copies + 1)))
    for unit in range(1, copies + 1):
        await sim.set("hr", 0, [235], unit=unit)
        await sim.set("co", 0, [False], unit=unit)
    manifests = local_manifests(shared_data, tmp_path, sim.port, copies=copies)
    double = EdgeCoreDouble(mosquitto.url, NODE)
    for m in members:
        double.add_device(m)
    await double.start()
    cfg = parse_config(mapper_config(tmp_path, manifests, mosquitto.url, **kubeedge))
    return Runtime(cfg), double, sim


def _reported(double: EdgeCoreDouble, ident: str, twin: str) -> list[str]:
    return [
        doc["twin"][twin]["actual"]["value"]
        for i, doc in double.updates
        if i == ident and twin in doc["twin"] and "actual" in doc["twin"][twin]
    ]


async def test_reports_desired_values_malformed_deltas_and_state(
    tmp_path: Path, shared_data: Path, mosquitto: MosquittoBroker, modbus_server: ModbusServerFactory
) -> None:
    rt, double, sim = await _setup(tmp_path, shared_data, mosquitto, modbus_server)
    try:
        async with rt:
            mapper = rt.kubeedge
            assert mapper is not None
            # a device value comes back as a twin report: strings, lowercase types, one message per device
            await double.wait_for(
                lambda: double.actual(DEV, "temperature") == "23.5", what="temperature 23.5"
            )
            await double.wait_for(lambda: double.actual(DEV, "temperature-switch") == "0", what="switch 0")
            first = next(doc for i, doc in double.updates if i == DEV)
            assert first["twin"]["temperature"]["metadata"] == {"type": "float"}
            assert double.devices[DEV].twins["temperature-switch"].type == "int"
            assert isinstance(first["timestamp"], int)
            assert "expected" not in first["twin"]["temperature"]

            await sim.set("hr", 0, [301])
            await double.wait_for(
                lambda: double.actual(DEV, "temperature") == "30.1", what="changed value 30.1"
            )

            # a desired value set on the double reaches the device register (inverse transform: /0.1)
            double.set_desired(DEV, "temperature", "45.5")
            await double.wait_for(
                lambda: double.actual(DEV, "temperature") == "45.5", what="desired 45.5 reported"
            )
            assert await sim.get("hr", 0, 1) == [455]
            double.set_desired(DEV, "temperature-switch", "1")
            await double.wait_for(lambda: double.actual(DEV, "temperature-switch") == "1", what="switch on")
            assert await sim.get("co", 0, 1) == [True]

            # malformed deltas are counted and survived
            delta = double.topic(DEV, "twin/update/delta")
            double.publish(delta, b"{not json")
            double.publish(delta, {"event_id": "x", "timestamp": 1, "twin": {}})  # no delta
            double.publish(delta, {"event_id": "x", "timestamp": 1, "delta": {"no-such-twin": "1"}})
            double.publish(delta, {"event_id": "x", "timestamp": 1, "delta": {"temperature": "4 5"}})
            double.publish(delta, {"event_id": "x", "timestamp": 1, "delta": {"temperature": 45}})
            double.publish(double.topic("default/nobody", "twin/update/delta"), {"delta": {"a": "1"}})
            eventbus = mapper.reporters[0]
            await double.wait_for(
                lambda: eventbus.stats().get("delta_malformed", 0) >= 6, what="6 malformed deltas counted"
            )
            double.set_desired(DEV, "temperature", "12.3")
            await double.wait_for(
                lambda: double.actual(DEV, "temperature") == "12.3", what="a good delta after bad"
            )
            assert await sim.get("hr", 0, 1) == [123]

            # the device going offline shows as a state change, and back
            await double.wait_for(lambda: double.devices[DEV].state == "online", what="online")
            await sim.stop()
            await double.wait_for(lambda: double.devices[DEV].state == "offline", what="offline")
            await sim.start()
            await double.wait_for(lambda: double.devices[DEV].state == "online", what="online again")

            # EdgeCore's errors are counted with their reason
            double.refuse_next[DEV] = (500, "failed to write sqlite")
            await sim.set("hr", 0, [99])
            await double.wait_for(lambda: eventbus.stats()["results"].get("500") == 1, what="500 counted")
            metrics = rt.registry.render()
            assert "edgeflow_kubeedge_writes_ok_total" in metrics or "kubeedge_writes_ok_total" in metrics
        assert double.violations == []
        assert mapper.counts["writes_ok"] >= 3
    finally:
        await double.stop()


async def test_legacy_device_id_form(
    tmp_path: Path, shared_data: Path, mosquitto: MosquittoBroker, modbus_server: ModbusServerFactory
) -> None:
    sim = await modbus_server(units=(1,))
    await sim.set("hr", 0, [235])
    manifests = local_manifests(shared_data, tmp_path, sim.port)
    double = EdgeCoreDouble(mosquitto.url, NODE, form="name")  # KubeEdge <= 1.15: topics name the device only
    double.add_device("temperature-instance")
    await double.start()
    cfg = parse_config(mapper_config(tmp_path, manifests, mosquitto.url, device_id="name"))
    try:
        async with Runtime(cfg):
            await double.wait_for(lambda: double.actual("temperature-instance", "temperature") == "23.5", what="report")
            double.set_desired("temperature-instance", "temperature", "20.5")
            await double.wait_for(lambda: double.actual("temperature-instance", "temperature") == "20.5", what="write")
            assert await sim.get("hr", 0, 1) == [205]
        assert double.violations == []
    finally:
        await double.stop()


async def test_membership_adds_and_removes_devices_live(
    tmp_path: Path, shared_data: Path, mosquitto: MosquittoBroker, modbus_server: ModbusServerFactory
) -> None:
    rt, double, sim = await _setup(tmp_path, shared_data, mosquitto, modbus_server, copies=2, members=(DEV,))
    try:
        async with rt:
            # both manifests name this node; EdgeCore's membership says only DEV runs here
            await double.wait_for(
                lambda: "temperature-instance-2" not in rt.device_specs, what="device 2 removed"
            )
            await double.wait_for(
                lambda: double.actual(DEV, "temperature") == "23.5", what="device 1 reports"
            )
            reads_before = rt.services["modbus"].states["temperature-instance"].reads_ok
            await sim.set("hr", 0, [404], unit=2)
            double.add_member(DEV2)
            await double.wait_for(
                lambda: double.actual(DEV2, "temperature") == "40.4", what="added device reports"
            )
            # the device that stayed kept its state (its counters were not reset)
            assert rt.services["modbus"].states["temperature-instance"].reads_ok >= reads_before
            double.remove_member(DEV2)
            await double.wait_for(
                lambda: "temperature-instance-2" not in rt.device_specs, what="device 2 gone"
            )
            n = len(_reported(double, DEV2, "temperature"))
            t0 = time.monotonic()
            await double.wait_for(lambda: time.monotonic() - t0 > 0.8, what="a while")
            assert len(_reported(double, DEV2, "temperature")) == n
        assert double.violations == []
    finally:
        await double.stop()


async def test_re_reports_after_the_broker_comes_back(
    tmp_path: Path, shared_data: Path, mosquitto: MosquittoBroker, modbus_server: ModbusServerFactory
) -> None:
    rt, double, _ = await _setup(tmp_path, shared_data, mosquitto, modbus_server)
    try:
        async with rt:
            await double.wait_for(lambda: double.actual(DEV, "temperature") == "23.5", what="first report")
            await double.stop()
            # a fresh EdgeCore (nothing of the old twins), subscribed before the broker goes away, so
            # what the mapper sends after the restart waits for it in its session
            double2 = EdgeCoreDouble(mosquitto.url, NODE, client_id="edgecore-restarted")
            double2.add_device(DEV)
            await double2.start()
            await double2.stop()
            connects = rt.kubeedge.reporters[0].stats()["connects"]
            mosquitto.restart()
            await double2.start()
            try:
                # the value did not change and the heartbeat is 10 s: only the reconnection reports it
                await double2.wait_for(
                    lambda: double2.actual(DEV, "temperature") == "23.5", within=8, what="re-report"
                )
                assert rt.kubeedge.reporters[0].stats()["connects"] > connects
                assert double2.violations == []
            finally:
                await double2.stop()
    finally:
        await double.stop()


async def test_twin_reports_through_a_deadband(
    tmp_path: Path, shared_data: Path, mosquitto: MosquittoBroker, modbus_server: ModbusServerFactory
) -> None:
    rt, double, sim = await _setup(
        tmp_path, shared_data, mosquitto, modbus_server, rules=[{"type": "deadband", "absolute": 1.0}]
    )
    try:
        async with rt:
            await double.wait_for(lambda: double.actual(DEV, "temperature") == "23.5", what="first report")
            state = rt.services["modbus"].states["temperature-instance"]
            await sim.set("hr", 0, [240])  # +0.5: inside the band
            reads = state.reads_ok
            await double.wait_for(lambda: state.reads_ok >= reads + 4, what="polls of 24.0")
            await sim.set("hr", 0, [260])  # +2.5: out of it
            await double.wait_for(lambda: double.actual(DEV, "temperature") == "26.0", what="26.0")
            assert "24.0" not in _reported(double, DEV, "temperature")
        assert double.violations == []
    finally:
        await double.stop()
