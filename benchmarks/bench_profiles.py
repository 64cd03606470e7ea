"""Cost of loading profiles/CRDs and of the per-value EdgeX transform path.

Run: python benchmarks/bench_profiles.py [SHARED_DATA_DIR]
Prints what it measured; asserts nothing.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

from edgeflow.profiles import load_kubeedge, load_profile, process_read, transform_read


def _per_call(fn: Callable[[], object], n: int) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n


def main() -> None:
    here = Path(__file__).resolve().parents[1]
    default = next(
        (c for c in (here.parent / "shared" / "data", here.parent.parent / "shared" / "data") if c.is_dir()),
        here.parent / "shared" / "data",
    )
    data = Path(sys.argv[1]) if len(sys.argv) > 1 else default
    modbus = data / "edgex" / "modbus.test.device.profile.yml"
    kube = data / "kubeedge" / "crd_v1beta1_device_temperature-instance_modbus.yaml"
    profile = load_profile(modbus)
    room = profile.resource("RoomTemperature")
    rows = [
        ("load_profile(modbus.test.device.profile.yml)", _per_call(lambda: load_profile(modbus), 200)),
        ("load_kubeedge(temperature-instance)", _per_call(lambda: load_kubeedge(kube), 200)),
        (
            "transform_read(RoomTemperature Float32 scale 0.1)",
            _per_call(lambda: transform_read(room, 215.0), 50_000),
        ),
        ("transform_read(float mode)", _per_call(lambda: transform_read(room, 215.0, mode="float"), 50_000)),
        ("process_read(SwitchA, mapped)", _per_call(lambda: process_read(profile, "SwitchA", True), 50_000)),
        ("process_read(RoomTemperature)", _per_call(lambda: process_read(profile, room, 215.0), 50_000)),
    ]
    for name, seconds in rows:
        print(f"{name:55s} {seconds * 1e6:10.2f} µs/call")


if __name__ == "__main__":
    main()
