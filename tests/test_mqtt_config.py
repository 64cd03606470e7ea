"""The MQTT connector's options and devices' ``protocols.mqtt``: bad input is a ConfigError naming
the key path; nothing connects before ``open``."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.mqtt import MqttConnector, parse_device, parse_options
from edgeflow.connector import load_connector
from edgeflow.errors import ConfigError
from edgeflow.profiles import Device, DeviceProfile

PROFILE = DeviceProfile.model_validate(
    {
        "name": "P",
        "deviceResources": [{"name": "t", "properties": {"valueType": "Float64", "readWrite": "RW"}}],
    }
)


def device(name: str = "d1", **mqtt: Any) -> Device:
    return Device(name=name, profile_name="P", protocols={"mqtt": mqtt} if mqtt else {})


def test_the_connector_is_found_through_the_registry() -> None:
    assert load_connector("mqtt") is MqttConnector
    assert MqttConnector.supports_push


@pytest.mark.parametrize(
    ("options", "path", "message"),
    [
        ({"url": "http://x"}, "connectors.mqtt.url", "scheme must be mqtt://"),
        ({"url": "mqtt://h", "tls": {}}, "connectors.mqtt", "url is not mqtts://"),
        ({"qos": 1}, "connectors.mqtt.qos", "unknown key"),
        ({"incoming": {"qos": 3}}, "connectors.mqtt.incoming.qos", ""),
        ({"incoming": {"prefix": "a/+"}}, "connectors.mqtt.incoming.prefix", "wildcards"),
        ({"commands": {"timeout": "soon"}}, "connectors.mqtt.commands.timeout", "not a duration"),
        ({"commands": {"qos": 2}}, "connectors.mqtt.commands.qos", ""),
        ({"auth": {"password": "x"}}, "connectors.mqtt.auth.username", "required"),
        ({"max_payload": "1 parsec"}, "connectors.mqtt.max_payload", ""),
    ],
)
def test_bad_options_name_their_key(options: dict[str, Any], path: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        MqttConnector(options)
    paths = [p for p, _ in info.value.problems]
    assert path in paths, info.value
    assert message in str(info.value)


def test_defaults_are_edgex_device_mqtt() -> None:
    o = parse_options({})
    assert (o.incoming.prefix, o.commands.prefix, o.commands.response_prefix) == (
        "incoming/data",
        "command",
        "command/response",
    )
    assert (o.incoming.qos, o.commands.qos, o.commands.timeout, o.protocol) == (0, 0, 5.0, "3.1.1")
    assert parse_options({"commands": {"timeout": "750ms"}, "max_payload": "64KiB"}).commands.timeout == 0.75


def test_device_protocols() -> None:
    c = parse_options({}).commands
    assert parse_device(device(), c).command_topic is None  # publishes only
    assert parse_device(device(CommandTopic="command/MQTT-test-device"), c).command_topic == (
        "command/MQTT-test-device"
    )
    assert parse_device(device("a/b", Commands=True), c).command_topic == "command/a%2Fb"
    assert parse_device(device(CommandTopic="x/y", Commands=False), c).command_topic is None
    for bad, key in [
        ({"CommandTopic": "command/+"}, "CommandTopic"),
        ({"CommandTopic": 5}, "CommandTopic"),
        ({"Commands": "yes"}, "Commands"),
        ({"Topic": "x"}, "Topic"),
    ]:
        with pytest.raises(ConfigError) as info:
            MqttConnector({}).add_device(device(**bad), PROFILE)
        assert info.value.problems[0][0] == f"devices.d1.protocols.mqtt.{key}"


async def test_commands_to_a_device_that_takes_none_say_how_to_enable_them() -> None:
    from edgeflow.errors import ConnectorError

    conn = MqttConnector({})
    conn.add_device(device(), PROFILE)
    with pytest.raises(ConnectorError, match="CommandTopic"):
        await conn.read("d1", PROFILE.device_resources)
    conn2 = MqttConnector({})
    conn2.add_device(device(Commands=True), PROFILE)
    with pytest.raises(ConnectorError, match="not open"):
        await conn2.read("d1", PROFILE.device_resources)
