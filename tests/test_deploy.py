"""The container and the Kubernetes manifests (issue 17): the manifests are valid Kubernetes objects,
the ConfigMap is a configuration ``edgeflow validate`` accepts, and the Dockerfile's command line, with
its environment, mounts and health check, runs here without Docker."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml"))
DOCKERFILE = ROOT / "Dockerfile"
KUBERNETES = "1.29.0"  # the oldest Kubernetes KubeEdge v1.18+ supports


def documents() -> list[dict[str, Any]]:
    return [d for p in MANIFESTS for d in yaml.safe_load_all(p.read_text(encoding="utf-8")) if d]


def kind(name: str) -> dict[str, Any]:
    (doc,) = [d for d in documents() if d["kind"] == name]
    return doc


def test_manifests_are_valid_kubernetes_objects() -> None:
    kv = pytest.importorskip("kubernetes_validate")
    docs = documents()
    assert {d["kind"] for d in docs} >= {"ConfigMap", "Secret", "DaemonSet"}
    for doc in docs:
        kv.validate(doc, KUBERNETES, strict=True)
    broken = json.loads(json.dumps(kind("DaemonSet")))
    broken["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["paht"] = "/x"
    with pytest.raises(kv.ValidationError):  # the check is strict: a typo is caught
        kv.validate(broken, KUBERNETES, strict=True)


def test_the_daemonset_is_what_an_edge_node_needs() -> None:
    pod = kind("DaemonSet")["spec"]["template"]["spec"]
    assert "node-role.kubernetes.io/edge" in pod["nodeSelector"]
    assert any(t["key"] == "node-role.kubernetes.io/edge" for t in pod["tolerations"])
    (c,) = pod["containers"]
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["resources"]["requests"] and c["resources"]["limits"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "hostPath" in volumes[mounts["/var/lib/edgeflow"]]  # the outbox outlives the pod
    assert "configMap" in volumes[mounts["/etc/edgeflow"]]
    assert "secret" in volumes[mounts["/run/secrets/edgeflow"]]
    assert volumes[mounts["/etc/kubeedge"]]["hostPath"]["path"] == "/etc/kubeedge"  # dmi.sock


def dockerfile() -> dict[str, Any]:
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    out: dict[str, Any] = {"env": {}}
    for line in text.splitlines():
        word, _, rest = line.strip().partition(" ")
        if word == "FROM":
            out["from"] = rest.strip()
        elif word == "USER":
            out["user"] = rest.strip()
        elif word == "ENV":
            out["env"].update(dict(re.findall(r"(\w+)=(\S+)", rest)))
        elif word in ("ENTRYPOINT", "CMD"):
            out[word.lower()] = json.loads(rest)
        elif word == "HEALTHCHECK":
            out["healthcheck"] = json.loads(rest.split(" CMD ", 1)[1])
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.server
def test_the_containers_command_line_runs_with_the_manifests_config_and_secret(tmp_path: Path) -> None:
    """What the kubelet would do, without Docker: the ConfigMap and the Secret written where they are
    mounted (under a temporary root), the image's environment and the pod's, the image's ENTRYPOINT and
    the pod's args; the image's health check passes; SIGTERM stops it cleanly; the outbox is 0600."""
    image = dockerfile()
    assert image["from"].startswith("python:3.11-slim")
    assert image["user"] not in ("", "0", "root")
    mounts = {"/etc/edgeflow": tmp_path / "etc", "/run/secrets/edgeflow": tmp_path / "secret"}
    mounts["/var/lib/edgeflow"] = tmp_path / "data"

    def remap(text: str) -> str:
        for inside, outside in mounts.items():
            text = text.replace(inside, str(outside))
        return text

    for path in mounts.values():
        path.mkdir()
    for name, text in kind("ConfigMap")["data"].items():
        (mounts["/etc/edgeflow"] / name).write_text(remap(text))
    for name, text in kind("Secret")["stringData"].items():
        (mounts["/run/secrets/edgeflow"] / name).write_text(text)
    container = kind("DaemonSet")["spec"]["template"]["spec"]["containers"][0]
    port = free_port()
    env = {**os.environ, **image["env"], "EDGEFLOW__SERVICE": "edge-node-a"}
    env["EDGEFLOW__METRICS__LISTEN"] = f"127.0.0.1:{port}"  # the image listens on 0.0.0.0:9464
    argv = [remap(a) for a in image["entrypoint"] + container["args"]]
    assert argv[:2] == ["edgeflow", "run"]
    validate = subprocess.run(
        [sys.executable, "-m", "edgeflow", "validate", argv[-1]],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert validate.returncode == 0, validate.stderr
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgeflow", *argv[1:]],
        env=env,
        cwd=mounts["/var/lib/edgeflow"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        health = [a.replace("9464", str(port)) for a in image["healthcheck"]]
        assert health[0] == "python"
        deadline = time.monotonic() + 30
        while True:
            check = subprocess.run(
                [sys.executable, *health[1:]], capture_output=True, timeout=10, check=False
            )
            if check.returncode == 0:
                break
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, check.stderr
            time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    records = [json.loads(line) for line in err.splitlines() if line.strip()]  # --log-format json
    assert any("devices (virtual): 1: boiler-1" in r["message"] for r in records)
    assert "Traceback" not in err
    outbox = mounts["/var/lib/edgeflow"] / "outbox.sqlite"
    assert stat.S_IMODE(outbox.stat().st_mode) == 0o600
