"""MQTT device connector (EdgeX device-mqtt compatible): ``connectors.mqtt:MqttConnector``.

Devices publish on ``incoming/data/{device}/{source}`` (or topics of their own, mapped with
``topics:``); commands go out on ``{CommandTopic}/{resource}/{get|set}/{uuid}`` and replies come back
on ``command/response/{uuid}``. Install with the ``mqtt`` extra (paho-mqtt, used only through
:mod:`edgeflow.mqtt`). See the README section "mqtt" under Connectors.
"""

from __future__ import annotations

from connectors.mqtt._config import (
    CommandsSpec,
    DeviceLink,
    IncomingSpec,
    MqttOptions,
    TopicSpec,
    parse_device,
    parse_options,
)
from connectors.mqtt._connector import MqttConnector
from connectors.mqtt._jsonpath import JsonPath
from connectors.mqtt._rejects import PayloadError, Reason, Rejects

__all__ = [
    "CommandsSpec",
    "DeviceLink",
    "IncomingSpec",
    "JsonPath",
    "MqttConnector",
    "MqttOptions",
    "PayloadError",
    "Reason",
    "Rejects",
    "TopicSpec",
    "parse_device",
    "parse_options",
]
