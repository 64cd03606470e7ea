"""What the runtime tests share: a simulated sensor and the device entries that use it."""

from __future__ import annotations

from typing import Any

#: A virtual sensor: a walking temperature and a constant label.
SENSOR = {
    "name": "Sensor",
    "deviceResources": [
        {
            "name": "Temp",
            "attributes": {"generator": "walk", "min": 0, "max": 100, "step": 5, "start": 50},
            "properties": {"valueType": "Float64", "readWrite": "R", "units": "degC"},
        },
        {
            "name": "Label",
            "attributes": {"generator": "constant", "value": "ok"},
            "properties": {"valueType": "String", "readWrite": "R"},
        },
    ],
}


def sensors(names: list[str], temp: str, label: str | None = None) -> list[dict[str, Any]]:
    """Virtual sensors read every ``temp`` (and their label every ``label``), seeded by position."""
    events = [{"interval": temp, "sourceName": "Temp"}]
    if label is not None:
        events.append({"interval": label, "sourceName": "Label"})
    return [
        {
            "name": name,
            "connector": "virtual",
            "profile": SENSOR,
            "protocols": {"virtual": {"seed": i}},
            "autoEvents": events,
        }
        for i, name in enumerate(names)
    ]
