from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from edgeflow.config import apply_env_overrides, config_schema, load_config, parse_config
from edgeflow.errors import ConfigError
from edgeflow.profiles import DeviceProfile

PROFILE = {
    "name": "P",
    "deviceResources": [
        {"name": "T", "properties": {"valueType": "Float64", "readWrite": "R"}},
        {"name": "S", "properties": {"valueType": "Bool", "readWrite": "RW"}},
    ],
    "deviceCommands": [
        {
            "name": "Both",
            "readWrite": "R",
            "resourceOperations": [{"deviceResource": "T"}, {"deviceResource": "S"}],
        }
    ],
}


def base(**over: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "service": "svc",
        "devices": [
            {
                "name": "d1",
                "connector": "virtual",
                "profile": PROFILE,
                "autoEvents": [
                    {"interval": "1s", "sourceName": "T"},
                    {"interval": "250ms", "sourceName": "Both"},
                ],
            }
        ],
        "uplink": {"type": "file", "path": "out.jsonl"},
    }
    cfg.update(over)
    return cfg


def problems(exc: pytest.ExceptionInfo[ConfigError]) -> dict[str, str]:
    return dict(exc.value.problems)


def test_minimal_config_validates_with_inline_profile() -> None:
    cfg = parse_config(base(), environ={})
    assert cfg.service == "svc"
    assert isinstance(cfg.devices[0].profile, DeviceProfile)
    assert cfg.devices[0].auto_events[1].interval == "250ms"
    assert cfg.scheduler.failure_threshold == 3
    assert cfg.scheduler.transforms == "float"


def test_error_names_the_key_path_and_file(tmp_path: Path) -> None:
    data = base()
    data["devices"].append({"name": "d2", "connector": "virtual", "profile": PROFILE, "bogus": 1})
    data["devices"][0]["autoEvents"][0]["interval"] = "soon"
    path = tmp_path / "edge.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as exc:
        load_config(path, environ={})
    found = problems(exc)
    assert "devices[1].bogus" in found
    assert any(p.startswith("devices[0].autoEvents") for p in found), found
    assert str(path) in str(exc.value)


def test_wrong_type_deep_in_a_device_is_located() -> None:
    data = base()
    data["devices"][0]["protocols"] = {"modbus-tcp": "not-a-mapping"}
    with pytest.raises(ConfigError) as exc:
        parse_config(data, environ={})
    assert "devices[0].protocols.modbus-tcp" in problems(exc)


def test_unknown_autoevent_source_is_refused() -> None:
    data = base()
    data["devices"][0]["autoEvents"] = [{"interval": "1s", "sourceName": "Nope"}]
    with pytest.raises(ConfigError) as exc:
        parse_config(data, environ={})
    assert "devices[0].autoEvents[0].sourceName" in problems(exc)


def test_duplicate_device_names_are_refused() -> None:
    data = base()
    data["devices"].append(dict(data["devices"][0]))
    with pytest.raises(ConfigError, match="appears twice"):
        parse_config(data, environ={})


def test_missing_uplink_is_named() -> None:
    data = base()
    del data["uplink"]
    with pytest.raises(ConfigError) as exc:
        parse_config(data, environ={})
    assert "uplink" in problems(exc)


def test_unknown_uplink_type_names_the_discriminator() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(base(uplink={"type": "carrier-pigeon"}), environ={})
    assert any(k.startswith("uplink") for k in problems(exc))


def test_profile_path_is_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "p.yaml").write_text(yaml.safe_dump(PROFILE))
    data = base()
    data["devices"][0]["profile"] = "profiles/p.yaml"
    (tmp_path / "edge.yaml").write_text(yaml.safe_dump(data))
    cfg = load_config(tmp_path / "edge.yaml", environ={})
    profile = cfg.devices[0].profile
    assert isinstance(profile, DeviceProfile)
    assert profile.name == "P"


def test_missing_profile_file_is_a_config_error(tmp_path: Path) -> None:
    data = base()
    data["devices"][0]["profile"] = "nowhere.yaml"
    (tmp_path / "edge.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as exc:
        load_config(tmp_path / "edge.yaml", environ={})
    assert "devices[0].profile" in str(exc.value)


def test_env_overrides_nested_keys_lists_and_scalars() -> None:
    env = {
        "EDGEFLOW__UPLINK__PATH": "/data/x.jsonl",
        "EDGEFLOW__SCHEDULER__FAILURE_THRESHOLD": "7",
        "EDGEFLOW__DEVICES__0__ADMIN_STATE": "LOCKED",
        "UNRELATED": "1",
    }
    cfg = parse_config(base(), environ=env)
    assert str(cfg.uplink.path) == "/data/x.jsonl"
    assert cfg.scheduler.failure_threshold == 7
    assert cfg.devices[0].admin_state == "LOCKED"


def test_env_override_of_missing_list_item_is_an_error() -> None:
    with pytest.raises(ConfigError, match="no item 5"):
        apply_env_overrides(base(), {"EDGEFLOW__DEVICES__5__NAME": "x"})


def test_env_override_that_breaks_validation_is_reported_at_its_key() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(base(), environ={"EDGEFLOW__SCHEDULER__FAILURE_THRESHOLD": "zero"})
    assert "scheduler.failureThreshold" in problems(exc)


def test_non_mapping_and_bad_yaml_are_config_errors(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(p, environ={})
    p.write_text("a: [unclosed\n")
    with pytest.raises(ConfigError, match="YAML"):
        load_config(p, environ={})
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml", environ={})


def test_schema_is_published_with_aliases() -> None:
    schema = config_schema()
    assert "devices" in schema["properties"]
    assert schema["additionalProperties"] is False
    dev = schema["$defs"]["DeviceSpec"]["properties"]
    assert "autoEvents" in dev


def test_example_config_is_valid() -> None:
    root = Path(__file__).resolve().parents[1]
    cfg = load_config(root / "examples" / "virtual" / "edgeflow.yaml", environ={})
    assert len(cfg.devices) == 2


def test_rule_and_uplink_errors_name_the_key_the_user_wrote() -> None:
    data = base(
        pipelines=[{"name": "p", "rules": [{"type": "swing", "max_eror": 1}, {"type": "deadbnd"}]}],
        uplink={"type": "mqtt", "url": "http://x"},
    )
    with pytest.raises(ConfigError) as exc:
        parse_config(data, environ={})
    found = problems(exc)
    assert "pipelines[0].rules[0].max_eror" in found  # not ...rules[0].swing.max_eror
    assert "deadbnd" in found["pipelines[0].rules[1].type"]
    assert "did you mean 'deadband'" in found["pipelines[0].rules[1].type"]
    assert "mqtt://" in found["uplink.url"]


def test_push_capacity_and_linger_are_configured_and_checked() -> None:
    doc = base()
    doc["scheduler"] = {"pushCapacity": 500, "pushLinger": "50ms"}
    cfg = parse_config(doc, environ={})
    assert (cfg.scheduler.push_capacity, cfg.scheduler.push_linger) == (500, 0.05)
    doc["scheduler"] = {"pushCapacity": 0, "pushLinger": "-1s"}
    with pytest.raises(ConfigError) as exc:
        parse_config(doc, environ={})
    assert {"scheduler.pushCapacity", "scheduler.pushLinger"} <= set(problems(exc))
