"""The one duration parser and the one YAML loader (edgeflow.parsing), and that every file a user writes
goes through them: config, environment overrides, profiles, rules files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

from edgeflow.config import load_config, parse_config
from edgeflow.errors import ConfigError, ValueFormatError
from edgeflow.parsing import (
    DurationText,
    NonNegativeNanoseconds,
    NonNegativeSeconds,
    PositiveNanoseconds,
    PositiveSeconds,
    PropertyReader,
    duration_ns,
    duration_seconds,
    parse_duration,
    parse_yaml_value,
    validation_problems,
)
from edgeflow.profiles import load_profile
from edgeflow.replay import load_rules
from edgeflow.rules.spec import FilterSpec

S = 10**9

# --------------------------------------------------------------------------------------------------
# Durations
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("1s", S),
        ("500ms", 500_000_000),
        ("250ms", 250_000_000),
        ("1.5m", 90 * S),
        ("1m30s", 90 * S),
        ("1.5h", 5400 * S),
        ("2h", 7200 * S),
        ("1d", 86400 * S),
        ("1d12h", 129600 * S),
        ("1h2m3s4ms", 3723_004_000_000),
        ("250us", 250_000),
        ("250µs", 250_000),  # U+00B5, as Go
        ("250μs", 250_000),  # U+03BC, as Go
        ("7ns", 7),
        (".5s", S // 2),
        ("1.s", S),
        ("+2s", 2 * S),
        ("-1.5s", -1_500_000_000),
        ("0", 0),
        ("5", 5 * S),
        ("2.5", 2_500_000_000),
        ("1e-3", 1_000_000),
        (" 20s ", 20 * S),
        (5, 5 * S),
        (0.25, 250_000_000),
        (0.1, 100_000_000),  # exact: no 0.1 * 1e9 = 100000000.00000001 drift
        (-3, -3 * S),
    ],
)
def test_go_syntax_days_and_bare_seconds(text: object, ns: int) -> None:
    assert parse_duration(text) == ns


@pytest.mark.parametrize(
    "bad",
    ["", "s", "m", "1x", "1 s", "1s2", "1S", "ten seconds", "5 minutes", "--1s", "1.5.5s", ".s", "+", "1h-5m"],
)
def test_what_is_not_a_duration_is_refused_naming_the_value(bad: str) -> None:
    with pytest.raises(ValueFormatError, match="is not a duration; write seconds") as exc:
        parse_duration(bad)
    assert str(exc.value).startswith(repr(bad))
    assert isinstance(exc.value, ValueError)  # so pydantic reports it at the key path


@pytest.mark.parametrize("bad", [True, None, [1], float("inf"), float("nan")])
def test_what_is_not_a_number_or_a_string_is_refused(bad: object) -> None:
    with pytest.raises(ValueFormatError, match="is not a duration") as exc:
        parse_duration(bad)
    assert str(exc.value).startswith(repr(bad))


@pytest.mark.parametrize("huge", ["106752d", "1e999999", 2**70, 1e300])
def test_durations_past_go_int64_nanoseconds_are_refused(huge: object) -> None:
    with pytest.raises(ValueFormatError, match="too long"):
        parse_duration(huge)
    assert parse_duration("106751d") == 106751 * 86400 * S


def test_positive_and_non_negative() -> None:
    assert duration_ns("1m30s") == 90 * S
    assert duration_seconds("250ms") == 0.25
    assert duration_seconds(0, zero=True) == 0.0
    with pytest.raises(ValueFormatError, match="longer than 0"):
        duration_ns("0s")
    with pytest.raises(ValueFormatError, match="negative"):
        duration_ns("-1s", zero=True)


class _Fields(BaseModel):
    model_config = ConfigDict(extra="forbid")
    interval: PositiveSeconds = 1.0
    delay: NonNegativeSeconds = 0.0
    size: PositiveNanoseconds = S
    lateness: NonNegativeNanoseconds = 0
    text: DurationText = "1s"


def test_annotated_types_convert_and_refuse_at_the_key_path() -> None:
    f = _Fields.model_validate(
        {"interval": "1m30s", "delay": 0, "size": "1d", "lateness": "250ms", "text": " 1m30s "}
    )
    assert (f.interval, f.delay, f.size, f.lateness, f.text) == (90.0, 0.0, 86400 * S, 250_000_000, "1m30s")
    assert _Fields.model_validate({"text": 5}).text == "5"
    with pytest.raises(ValidationError) as exc:
        _Fields.model_validate({"interval": 0, "delay": "-1s", "size": "0ms", "lateness": "soon", "text": "0"})
    found = dict(validation_problems(exc.value))
    assert found == {
        "interval": "must be longer than 0, got 0",
        "delay": "must not be negative, got '-1s'",
        "size": "must be longer than 0, got '0ms'",
        "lateness": found["lateness"],
        "text": "must be longer than 0, got '0'",
    }
    assert found["lateness"].startswith("'soon' is not a duration")


def test_json_schema_of_a_duration_takes_a_number_or_a_string() -> None:
    prop = _Fields.model_json_schema()["properties"]["interval"]
    assert prop["anyOf"][0] == {"type": "number", "exclusiveMinimum": 0}
    assert prop["anyOf"][1]["type"] == "string"
    assert _Fields.model_json_schema()["properties"]["delay"]["anyOf"][0] == {"type": "number", "minimum": 0}


# --------------------------------------------------------------------------------------------------
# Every duration of the config uses it: the same syntax is accepted everywhere, and zero or negative
# is refused, with the key path, where it means nothing
# --------------------------------------------------------------------------------------------------

PROFILE = {
    "name": "P",
    "deviceResources": [{"name": "T", "properties": {"valueType": "Float64", "readWrite": "R"}}],
}


def config(**over: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "service": "svc",
        "devices": [
            {
                "name": "d1",
                "connector": "virtual",
                "profile": PROFILE,
                "autoEvents": [{"interval": "1s", "sourceName": "T"}],
            }
        ],
        "uplink": {"type": "file", "path": "out.jsonl"},
    }
    cfg.update(over)
    return cfg


def mqtt(**over: Any) -> dict[str, Any]:
    return {"type": "mqtt", "url": "mqtt://127.0.0.1:1883", **over}


def test_go_syntax_and_days_are_accepted_in_every_section() -> None:
    cfg = parse_config(
        config(
            scheduler={"backoffInitial": "1m30s", "backoffMax": "1d", "readTimeout": "1.5s"},
            bus={"block_timeout": "1m30s"},
            pipelines=[
                {
                    "name": "p",
                    "rules": [
                        {"type": "deadband", "absolute": 1, "heartbeat": "1m30s", "min_interval": "1d"},
                        {"type": "window", "kind": "hopping", "size": "1d", "hop": "1h30m"},
                        {"type": "sdt", "comp_dev": 1, "comp_min": 0, "comp_max": "1d"},
                    ],
                }
            ],
            uplink=mqtt(
                connect_timeout="1m30s",
                keepalive="1m30s",
                batching={"max_delay": "1m30s"},
                reconnect={"initial_delay": "250ms", "max_delay": "1d"},
            ),
        ),
        environ={},
    )
    assert (cfg.scheduler.backoff_initial, cfg.scheduler.backoff_max, cfg.scheduler.read_timeout) == (
        90.0,
        86400.0,
        1.5,
    )
    assert cfg.bus.block_timeout == 90.0
    rules = cfg.pipelines[0].rules
    assert (rules[0].heartbeat, rules[0].min_interval) == (90 * S, 86400 * S)  # type: ignore[union-attr]
    assert (rules[1].size, rules[1].hop) == (86400 * S, 5400 * S)  # type: ignore[union-attr]
    assert rules[2].comp_max == 86400 * S  # type: ignore[union-attr]
    up = cfg.uplink
    assert up.type == "mqtt"
    assert (up.connect_timeout, up.keepalive, up.batching.max_delay) == (90.0, 90, 90.0)
    assert (up.reconnect.initial_delay, up.reconnect.max_delay) == (0.25, 86400.0)


REFUSED: list[tuple[dict[str, Any], str, str]] = [
    ({"scheduler": {"backoffInitial": 0}}, "scheduler.backoffInitial", "longer than 0"),
    ({"scheduler": {"backoffMax": "-1s"}}, "scheduler.backoffMax", "negative"),
    ({"scheduler": {"readTimeout": "0s"}}, "scheduler.readTimeout", "longer than 0"),
    ({"bus": {"blockTimeout": 0}}, "bus.blockTimeout", "longer than 0"),
    ({"uplink": mqtt(connect_timeout=0)}, "uplink.connect_timeout", "longer than 0"),
    ({"uplink": mqtt(keepalive="1.5s")}, "uplink.keepalive", "whole number of seconds"),
    ({"uplink": mqtt(keepalive="1s")}, "uplink.keepalive", "greater than or equal to 5"),
    ({"uplink": mqtt(batching={"max_delay": "-1ms"})}, "uplink.batching.max_delay", "negative"),
    ({"uplink": mqtt(batching={"max_delay": "2h"})}, "uplink.batching.max_delay", "3600"),
    ({"uplink": mqtt(reconnect={"initial_delay": 0})}, "uplink.reconnect.initial_delay", "longer than 0"),
    ({"uplink": mqtt(reconnect={"max_delay": "soon"})}, "uplink.reconnect.max_delay", "not a duration"),
]
RULES_REFUSED: list[tuple[dict[str, Any], str, str]] = [
    ({"type": "heartbeat", "interval": 0}, "interval", "longer than 0"),
    ({"type": "min_interval", "interval": "0s"}, "interval", "longer than 0"),
    ({"type": "on_change", "heartbeat": "0ms"}, "heartbeat", "longer than 0"),
    ({"type": "deadband", "absolute": 1, "min_interval": "-1s"}, "min_interval", "negative"),
    ({"type": "window", "kind": "tumbling", "size": 0}, "size", "longer than 0"),
    ({"type": "window", "kind": "hopping", "size": 10, "hop": "0s"}, "hop", "longer than 0"),
    ({"type": "window", "kind": "tumbling", "size": 10, "allowed_lateness": -1}, "allowed_lateness", "negative"),
    ({"type": "sdt", "comp_dev": 1, "comp_min": "-1s"}, "comp_min", "negative"),
    ({"type": "sdt", "comp_dev": 1, "comp_max": 0}, "comp_max", "longer than 0"),
]


@pytest.mark.parametrize(("over", "path", "needle"), REFUSED)
def test_zero_or_negative_is_refused_where_meaningless(over: dict[str, Any], path: str, needle: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(config(**over), environ={})
    found = dict(exc.value.problems)
    assert needle in found[path], found


@pytest.mark.parametrize(("rule", "key", "needle"), RULES_REFUSED)
def test_rule_durations_are_refused_at_their_key(rule: dict[str, Any], key: str, needle: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(config(pipelines=[{"name": "p", "rules": [rule]}]), environ={})
    found = dict(exc.value.problems)
    assert needle in found[f"pipelines[0].rules[0].{key}"], found


def test_zero_is_allowed_where_it_means_off() -> None:
    cfg = parse_config(
        config(
            pipelines=[
                {
                    "name": "p",
                    "rules": [
                        {"type": "deadband", "absolute": 1, "min_interval": 0},
                        {"type": "window", "kind": "tumbling", "size": "1m", "allowed_lateness": "0s"},
                        {"type": "sdt", "comp_dev": 1, "comp_min": "0ms"},
                    ],
                }
            ],
            uplink=mqtt(batching={"max_delay": "0s"}),
        ),
        environ={},
    )
    assert cfg.uplink.type == "mqtt" and cfg.uplink.batching.max_delay == 0.0


@pytest.mark.parametrize(
    ("interval", "needle"),
    [("0s", "longer than 0"), ("-1s", "negative"), ("1x", "not a duration"), (True, "not a duration")],
)
def test_autoevent_interval_is_refused_at_its_key(interval: object, needle: str) -> None:
    data = config()
    data["devices"][0]["autoEvents"][0]["interval"] = interval
    with pytest.raises(ConfigError) as exc:
        parse_config(data, environ={})
    assert needle in dict(exc.value.problems)["devices[0].autoEvents[0].interval"]


def test_autoevent_interval_stays_the_string_edgex_wrote() -> None:
    data = config()
    data["devices"][0]["autoEvents"] = [
        {"interval": "1m30s", "sourceName": "T"},
        {"interval": "1d", "sourceName": "T"},
        {"interval": 2.5, "sourceName": "T"},
    ]
    aes = parse_config(data, environ={}).devices[0].auto_events
    assert [a.interval for a in aes] == ["1m30s", "1d", "2.5"]
    assert [a.interval_ns for a in aes] == [90 * S, 86400 * S, 2_500_000_000]


# --------------------------------------------------------------------------------------------------
# YAML 1.2 everywhere: `off`, `no`, `on` and `1:30` are strings in every file a user writes
# --------------------------------------------------------------------------------------------------

YAML_1_1_TRAPS = ["off", "no", "on", "yes", "1:30"]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("off", "off"),
        ("no", "no"),
        ("ON", "ON"),
        ("1:30", "1:30"),
        ("2024-01-01", "2024-01-01"),
        ("0o17", 15),
        ("0x1F", 31),
        ("7", 7),
        ("1.5", 1.5),
        ("true", True),
        ("null", None),
        ("", None),
        ("[a, off]", ["a", "off"]),
        ("{k: no}", {"k": "no"}),
    ],
)
def test_parse_yaml_value_reads_yaml_1_2_scalars(text: str, value: object) -> None:
    assert parse_yaml_value(text, "<test>") == value


def test_parse_yaml_value_refuses_bad_yaml_naming_the_source() -> None:
    with pytest.raises(ConfigError, match="<test>: not valid YAML"):
        parse_yaml_value("[unclosed", "<test>")
    with pytest.raises(ConfigError, match="2 YAML documents"):
        parse_yaml_value("a\n---\nb\n", "<test>")


def test_yaml_1_1_traps_are_strings_in_a_config_file(tmp_path: Path) -> None:
    (tmp_path / "edge.yaml").write_text(
        """
service: svc
devices:
  - name: off
    connector: virtual
    description: 1:30
    labels: [no, on, yes, 1:30]
    profile:
      name: P
      deviceResources:
        - {name: T, properties: {valueType: Float64, readWrite: R}}
    autoEvents: [{interval: 1m30s, sourceName: T}]
  - {name: no, connector: virtual, profile: {name: Q, deviceResources: [{name: on, properties: {valueType: Bool, readWrite: R}}]}}
uplink: {type: file, path: out.jsonl}
""",
        encoding="utf-8",
    )
    cfg = load_config(tmp_path / "edge.yaml", environ={})
    off, no = cfg.devices
    assert (off.name, off.description, off.labels) == ("off", "1:30", ["no", "on", "yes", "1:30"])
    assert no.name == "no"
    assert no.profile.device_resources[0].name == "on"  # type: ignore[union-attr]


def test_yaml_1_1_traps_are_strings_in_a_profile(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(
        """
name: off
description: 1:30
deviceResources:
  - {name: off, properties: {valueType: String, readWrite: R, units: 1:30}}
  - {name: no, properties: {valueType: Bool, readWrite: R}}
  - {name: on, properties: {valueType: Bool, readWrite: R}}
""",
        encoding="utf-8",
    )
    p = load_profile(tmp_path / "p.yaml")
    assert (p.name, p.description) == ("off", "1:30")
    assert [r.name for r in p.device_resources] == ["off", "no", "on"]
    assert p.device_resources[0].properties.units == "1:30"


def test_yaml_1_1_traps_are_strings_in_env_overrides() -> None:
    env = {
        "EDGEFLOW__DEVICES__0__NAME": "off",
        "EDGEFLOW__DEVICES__0__DESCRIPTION": "1:30",
        "EDGEFLOW__DEVICES__0__LABELS": "[no, on, 1:30]",
        "EDGEFLOW__SERVICE": "no",
        "EDGEFLOW__SCHEDULER__BACKOFF_INITIAL": "1m30s",
        "EDGEFLOW__SCHEDULER__FAILURE_THRESHOLD": "0x10",
    }
    cfg = parse_config(config(), environ=env)
    d = cfg.devices[0]
    assert (cfg.service, d.name, d.description, d.labels) == ("no", "off", "1:30", ["no", "on", "1:30"])
    assert (cfg.scheduler.backoff_initial, cfg.scheduler.failure_threshold) == (90.0, 16)


def test_bad_yaml_in_an_env_override_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="EDGEFLOW__SERVICE: not valid YAML"):
        parse_config(config(), environ={"EDGEFLOW__SERVICE": "[unclosed"})


def test_yaml_1_1_traps_are_strings_in_a_rules_file(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(
        "- {type: filter, device: [off, no, on], resource: 1:30}\n"
        "- {type: heartbeat, interval: 1m30s}\n"
        "- {type: window, kind: tumbling, size: 1d}\n",
        encoding="utf-8",
    )
    f, hb, w = load_rules(tmp_path / "rules.yaml")
    assert isinstance(f, FilterSpec)
    assert (f.device, f.resource) == (["off", "no", "on"], ["1:30"])
    assert (hb.interval, w.size) == (90 * S, 86400 * S)  # type: ignore[union-attr]


def test_duplicate_keys_are_an_error_in_a_config(tmp_path: Path) -> None:
    (tmp_path / "edge.yaml").write_text("service: a\nservice: b\nuplink: {type: file, path: x}\n")
    with pytest.raises(ConfigError, match="duplicate key 'service'"):
        load_config(tmp_path / "edge.yaml", environ={})


def test_property_reader_converts_defaults_and_names_every_bad_key() -> None:
    r = PropertyReader({"UnitID": "7", "Timeout": "soon", "Port": "x", "Empty": ""}, "devices[0].protocols.p")
    r.take("UnitID", int, 1)
    r.take("Timeout", duration_seconds, 5.0)
    r.take("Port", int, 502)
    r.take("Empty", int, 9)
    r.take("Absent", int, 3)
    assert r.values == {"UnitID": 7, "Empty": 9, "Absent": 3}
    assert [k for k, _ in r.problems] == ["devices[0].protocols.p.Timeout", "devices[0].protocols.p.Port"]
    assert "soon" in r.problems[0][1]
