"""The one MQTT layer: every MQTT client in edgeflow (the uplink, the receiver, the MQTT device
connector, the twin) connects through it.

* :mod:`edgeflow.mqtt.spec` — broker URLs, TLS, login and reconnection settings (pydantic; no paho),
  re-exported here;
* :mod:`edgeflow.mqtt.topics` — topic names and filters; :func:`~edgeflow.mqtt.topics.escape_level`
  makes any name one wildcard-free level (no paho);
* :mod:`edgeflow.mqtt.connection` — the paho-mqtt bridge: one connection driven by the running event
  loop, TLS that fails closed, capped jittered :class:`~edgeflow.mqtt.connection.Backoff`. It imports
  paho-mqtt (the ``mqtt`` extra), so it is not imported here;
* :mod:`edgeflow.mqtt.session` — a client that outlives its connections: reconnects, subscribes again
  at each filter's QoS, keeps a persistent session (the MQTT device connector's link).
"""

from __future__ import annotations

from edgeflow.mqtt.spec import BrokerAddress, MqttAuthSpec, ReconnectSpec, TlsSpec, parse_broker_url

__all__ = ["BrokerAddress", "MqttAuthSpec", "ReconnectSpec", "TlsSpec", "parse_broker_url"]
