"""A new user's first hour (issue 17): every ordinary mistake is one line naming the file, variable or
key path, exit 2, never a traceback; ``validate`` refuses what ``run`` would refuse; logs as operators
expect. Each test runs the command as a user does, in a subprocess."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import MosquittoFactory

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "virtual"


def edgeflow(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "edgeflow", *args],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=cwd,
        check=False,
        env={**os.environ, **(env or {})},
    )


def one_line_error(res: subprocess.CompletedProcess[str], *must: str) -> str:
    """Exit 2, no traceback, the first line starts ``edgeflow COMMAND:`` and names everything in ``must``."""
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr, res.stderr
    errors = [line for line in res.stderr.splitlines() if line.startswith("edgeflow ")]
    assert len(errors) == 1, res.stderr
    for word in must:
        assert word in res.stderr, (word, res.stderr)
    return res.stderr


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., Path]:
    """``make(change)``: the virtual example with ``change(config_dict)`` applied, written beside a copy
    of its profile; returns the file."""
    (tmp_path / "boiler.profile.yaml").write_text((EXAMPLE / "boiler.profile.yaml").read_text())

    def make(change: Callable[[dict[str, Any]], object] = lambda c: None, name: str = "edge.yaml") -> Path:
        data = yaml.safe_load((EXAMPLE / "edgeflow.yaml").read_text())
        data["uplink"]["path"] = str(tmp_path / "out" / "events.jsonl")
        data.pop("metrics", None)
        change(data)
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    return make


def both(path: Path) -> list[subprocess.CompletedProcess[str]]:
    """``validate`` and ``run`` on the same file: they must refuse alike."""
    return [edgeflow("validate", str(path)), edgeflow("run", str(path), "--duration", "1")]


# -- 1. tracebacks on ordinary mistakes ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("listen", "why"),
    [("127.0.0.1:99999", "0 to 65535"), ("localhost", "host:port"), ("::1:9100", "brackets")],
)
def test_bad_metrics_listen_is_refused_by_validate_and_run(
    make_config: Callable[..., Path], listen: str, why: str
) -> None:
    path = make_config(lambda c: c.update(metrics={"listen": listen}))
    for res in both(path):
        one_line_error(res, str(path), "metrics.listen", why)


def test_metrics_port_in_use_is_one_line(make_config: Callable[..., Path]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = make_config(lambda c: c.update(metrics={"listen": f"127.0.0.1:{port}"}))
        res = edgeflow("run", str(path), "--duration", "1")
    one_line_error(res, str(path), "metrics.listen", "in use")


def test_files_that_are_not_utf8(tmp_path: Path, make_config: Callable[..., Path]) -> None:
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("service: caf\xe9\n".encode("latin-1"))
    for command in ("validate", "run"):
        one_line_error(edgeflow(command, str(bad)), str(bad), "not UTF-8")
    csv = tmp_path / "data.csv"
    csv.write_bytes(b"t,v\n1,2\n2,\xff\n")
    rules = tmp_path / "rules.yaml"
    rules.write_text("- {type: deadband, absolute: 1}\n")
    replay = ["replay", "--time-column", "t", "--value-column", "v"]
    one_line_error(edgeflow(*replay, "--csv", str(csv), "--rules", str(rules)), str(csv), "not UTF-8")
    good = tmp_path / "good.csv"
    good.write_text("t,v\n1,2\n2,3\n")
    rules.write_bytes(b"- {type: deadband, absolute: 1, note: \xff}\n")
    one_line_error(edgeflow(*replay, "--csv", str(good), "--rules", str(rules)), str(rules), "not UTF-8")


@pytest.mark.parametrize("flag", ["--report", "--reconstruct"])
def test_replay_output_that_cannot_be_written(tmp_path: Path, flag: str) -> None:
    csv = tmp_path / "data.csv"
    csv.write_text("t,v\n1,2\n2,3\n")
    rules = tmp_path / "rules.yaml"
    rules.write_text("- {type: deadband, absolute: 1}\n")
    out = "/nonexistent-dir/out.json"
    res = edgeflow(
        "replay",
        "--csv",
        str(csv),
        "--time-column",
        "t",
        "--value-column",
        "v",
        "--rules",
        str(rules),
        flag,
        out,
    )
    one_line_error(res, out)


# -- 2. validate says valid, then run refuses ---------------------------------------------------------


def _profile_change(tmp_path: Path, **attrs: Any) -> Callable[[dict[str, Any]], None]:
    profile = yaml.safe_load((EXAMPLE / "boiler.profile.yaml").read_text())
    profile["deviceResources"].append(
        {"name": "Mode", "attributes": attrs, "properties": {"valueType": "String", "readWrite": "R"}}
    )
    (tmp_path / "mode.profile.yaml").write_text(yaml.safe_dump(profile))

    def change(c: dict[str, Any]) -> None:
        c["devices"][0]["profile"] = "mode.profile.yaml"

    return change


@pytest.mark.parametrize(
    ("case", "must"),
    [
        ("connector", ["devices[0].connector", "virtul", "did you mean 'virtual'"]),
        ("generator", ["generator", "wlak", "did you mean 'walk'"]),
        ("walk_on_string", ["generator", "numeric valueType"]),
    ],
)
def test_validate_runs_every_check_run_runs(
    tmp_path: Path, make_config: Callable[..., Path], case: str, must: list[str]
) -> None:
    if case == "connector":
        path = make_config(lambda c: c["devices"][0].update(connector="virtul"))
    elif case == "generator":
        path = make_config(_profile_change(tmp_path, generator="wlak"))
    else:
        path = make_config(_profile_change(tmp_path, generator="walk"))
    for res in both(path):
        one_line_error(res, str(path), *must)


# -- 3. typos are errors, with a suggestion -----------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "must"),
    [
        (
            lambda c: c["devices"][0].update(protocols={"virtual": {"sed": 1}}),
            ["protocols.virtual.sed", "did you mean 'seed'"],
        ),
        (
            lambda c: c.update(connectors={"modbus": {"max_gap_register": 16}}),
            ["connectors.modbus.max_gap_register", "did you mean 'max_gap_registers'"],
        ),
        (
            lambda c: c.update(connectors={"virtual": {"foo": 1}}),
            ["connectors.virtual.foo", "unknown option"],
        ),
        (lambda c: c.update(connectors={"modbuss": {}}), ["connectors.modbuss", "did you mean 'modbus'"]),
        (lambda c: c["uplink"].update(patth="x"), ["uplink.patth", "did you mean 'path'"]),
    ],
)
def test_unknown_keys_are_errors_everywhere(
    make_config: Callable[..., Path], change: Callable[[dict[str, Any]], None], must: list[str]
) -> None:
    path = make_config(change)
    for res in both(path):
        one_line_error(res, str(path), *must)


# -- 4. one error format ----------------------------------------------------------------------------


def test_malformed_yaml_is_one_clean_line_in_every_command(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("devices: [1\nuplink: 2\n")
    for command in ("validate", "run", "inspect"):
        err = one_line_error(edgeflow(command, str(bad)), str(bad), "line 2")
        assert len(err.strip().splitlines()) == 1, err


def test_unknown_rule_key_reads_the_same_in_a_config_and_a_rules_file(
    tmp_path: Path, make_config: Callable[..., Path]
) -> None:
    path = make_config(lambda c: c["pipelines"][0]["rules"][0].update(max_eror=1))
    in_config = one_line_error(edgeflow("validate", str(path)), "pipelines[0].rules[0].max_eror")
    rules = tmp_path / "rules.yaml"
    rules.write_text("- {type: swing, max_error: 1, max_eror: 1}\n")
    csv = tmp_path / "d.csv"
    csv.write_text("t,v\n1,2\n")
    in_rules = one_line_error(
        edgeflow(
            "replay", "--csv", str(csv), "--time-column", "t", "--value-column", "v", "--rules", str(rules)
        ),
        "[0].max_eror",
    )
    wanted = "unknown key (did you mean 'max_error'?)"
    assert wanted in in_config and wanted in in_rules
    assert "Extra inputs" not in in_rules


def test_an_unknown_type_names_the_choices(make_config: Callable[..., Path]) -> None:
    path = make_config(lambda c: c["uplink"].update(type="fil"))
    err = one_line_error(
        edgeflow("validate", str(path)), "uplink.type", "'fil'", "file, mqtt", "did you mean 'file'"
    )
    assert "Input tag" not in err


def test_an_environment_override_is_blamed_on_its_variable(make_config: Callable[..., Path]) -> None:
    path = make_config()
    res = edgeflow("validate", str(path), env={"EDGEFLOW__UPLINK__PATHH": "/tmp/x"})
    err = one_line_error(res, "EDGEFLOW__UPLINK__PATHH", "uplink.pathh", "did you mean 'path'")
    assert str(path) not in err


def test_validate_counts_in_english(make_config: Callable[..., Path]) -> None:
    path = make_config(lambda c: (c["devices"].pop(), c["pipelines"].pop()))
    res = edgeflow("validate", str(path))
    assert res.returncode == 0, res.stderr
    assert "(1 device, 1 pipeline," in res.stdout


# -- 5. negative durations --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["demo", "--seconds", "-1"],
        ["run", "CONFIG", "--duration", "-1"],
        ["run", "CONFIG", "--duration", "0"],
    ],
)
def test_negative_or_zero_durations_are_usage_errors(
    make_config: Callable[..., Path], args: list[str]
) -> None:
    path = make_config()
    res = edgeflow(*[str(path) if a == "CONFIG" else a for a in args])
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert "--seconds" in res.stderr or "--duration" in res.stderr


# -- 7. logs ----------------------------------------------------------------------------------------


def test_run_says_what_it_runs_and_logs_json_anywhere_on_the_line(make_config: Callable[..., Path]) -> None:
    path = make_config(lambda c: c.update(metrics={"listen": "127.0.0.1:0"}))
    res = edgeflow("run", str(path), "--duration", "1", "--log-format", "json")
    assert res.returncode == 0, res.stderr
    records = [json.loads(line) for line in res.stderr.splitlines() if line.strip()]
    assert records and all({"ts", "level", "logger", "message"} <= r.keys() for r in records)
    messages = "\n".join(r["message"] for r in records)
    assert "devices (virtual): 2: boiler-1, boiler-2" in messages
    assert "pipeline temperatures: swing" in messages
    assert "uplink: file" in messages
    assert "metrics: http://127.0.0.1:" in messages
    quiet = edgeflow("validate", str(path), "--log-level", "warning", "-v")
    assert quiet.returncode == 0, quiet.stderr


def test_library_loggers_stay_quiet_unless_asked() -> None:
    from edgeflow.cli._logging import setup_logging

    try:
        setup_logging("debug", "text", "warning")
        assert logging.getLogger("edgeflow").getEffectiveLevel() == logging.DEBUG
        assert logging.getLogger("pymodbus.logging").getEffectiveLevel() == logging.WARNING
        assert logging.getLogger("asyncua.client").getEffectiveLevel() == logging.WARNING
        setup_logging("info", "text", "debug")
        assert logging.getLogger("pymodbus").getEffectiveLevel() == logging.DEBUG
    finally:
        root = logging.getLogger()
        for h in [h for h in root.handlers if h.get_name() == "edgeflow-cli"]:
            root.removeHandler(h)
        for name in ("edgeflow", "connectors", "pymodbus", "asyncua", "paho", "grpc", "psycopg"):
            logging.getLogger(name).setLevel(logging.NOTSET)
        root.setLevel(logging.WARNING)


@pytest.mark.server
def test_an_authentication_failure_is_one_line_without_a_misleading_warning(
    tmp_path: Path, make_config: Callable[..., Path], mosquitto_factory: MosquittoFactory
) -> None:
    broker = mosquitto_factory(users={"edge": "right"})
    path = make_config(
        lambda c: c.update(
            uplink={
                "type": "mqtt",
                "url": broker.url,
                "auth": {"username": "edge", "password_env": "EDGE_PASSWORD"},
                "outbox": {"path": str(tmp_path / "outbox.sqlite")},
            }
        )
    )
    res = edgeflow("run", str(path), "--duration", "2", env={"EDGE_PASSWORD": "wrong"})
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr
    assert "refused authentication as user 'edge'" in res.stderr
    assert "lost" not in res.stderr, res.stderr
    ok = edgeflow("run", str(path), "--duration", "1", env={"EDGE_PASSWORD": "right"})
    assert ok.returncode == 0, ok.stderr


# -- 9. receive -------------------------------------------------------------------------------------


@pytest.mark.server
def test_receive_names_a_bad_topic_filter_and_an_output_it_cannot_write(
    tmp_path: Path, mosquitto_factory: MosquittoFactory
) -> None:
    broker = mosquitto_factory()
    res = edgeflow("receive", "--url", broker.url, "--topic", "a/#/b", "--duration", "1")
    one_line_error(res, "--topic", "'a/#/b'", "'#' must be the last level")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    out = blocker / "x.jsonl"  # under a file: cannot be created, even by root
    res = edgeflow("receive", "--url", broker.url, "--out", str(out), "--duration", "1")
    one_line_error(res, str(out))


@pytest.mark.server
@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_receive_prints_its_summary_when_stopped_by_a_signal(
    tmp_path: Path, mosquitto_factory: MosquittoFactory, sig: str
) -> None:
    import os
    import signal
    import time

    broker = mosquitto_factory()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edgeflow",
            "receive",
            "--url",
            broker.url,
            "--out",
            str(tmp_path / "r.jsonl"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )
    try:
        deadline = time.monotonic() + 30
        while "New client connected" not in broker.log_text():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.1)
        time.sleep(0.3)
        proc.send_signal(getattr(signal, sig))
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    summary = json.loads(out)
    assert {"messages", "readings", "duplicates", "malformed"} <= summary.keys()


@pytest.mark.parametrize("listen", ["localhost", "127.0.0.1:99999", "::1:7777"])
def test_every_listen_address_is_checked_by_the_one_parser(listen: str) -> None:
    """The metrics endpoint and the KubeEdge mapper's REST API take ``host:port`` through one check."""
    from pydantic import ValidationError

    from edgeflow.config import MetricsSpec
    from edgeflow.twin.spec import RestSpec

    for model in (MetricsSpec, RestSpec):
        with pytest.raises(ValidationError, match=r"host:port|0 to 65535|brackets"):
            model.model_validate({"listen": listen})
