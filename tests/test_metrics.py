from __future__ import annotations

import math
import re

from prometheus_client.parser import text_string_to_metric_families

from edgeflow.metrics import Registry, Sample


def test_families_have_help_type_and_counters_end_in_total() -> None:
    reg = Registry(process=False)
    reg.add_collector(
        lambda: [
            Sample("reads_total", 3, (("device", 'a"b'),), help="reads", kind="counter"),
            Sample("reads_total", 4.5, (("device", "c\\d"),), kind="counter"),
            Sample("bytes_shipped", 10, kind="counter"),  # a counter named without the suffix
            Sample("up", 1),
        ]
    )
    text = reg.render()
    assert text.splitlines() == [
        "# HELP edgeflow_bytes_shipped_total bytes shipped",
        "# TYPE edgeflow_bytes_shipped_total counter",
        "edgeflow_bytes_shipped_total 10.0",
        "# HELP edgeflow_reads_total reads",
        "# TYPE edgeflow_reads_total counter",
        'edgeflow_reads_total{device="a\\"b"} 3.0',
        'edgeflow_reads_total{device="c\\\\d"} 4.5',
        "# HELP edgeflow_up up",
        "# TYPE edgeflow_up gauge",
        "edgeflow_up 1.0",
    ]
    # and Prometheus's own parser reads it back
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["edgeflow_reads"].type == "counter"
    assert [s.value for s in families["edgeflow_reads"].samples] == [3.0, 4.5]


def test_special_values_a_failing_collector_and_process_metrics() -> None:
    reg = Registry(prefix="")

    def broken() -> list[Sample]:
        raise RuntimeError("boom")

    reg.add_collector(broken)
    reg.add_collector(lambda: [Sample("a", math.nan), Sample("b", math.inf)])
    text = reg.render()
    assert re.search(r"^a NaN$", text, re.M) and re.search(r"^b \+Inf$", text, re.M)
    assert re.search(r"^process_cpu_seconds_total \S+$", text, re.M)
    assert re.search(r"^process_resident_memory_bytes \S+$", text, re.M)


def test_every_family_of_a_running_node_has_help_and_totals_are_counters() -> None:
    """What an operator's Prometheus scrapes from ``edgeflow run``: HELP and TYPE on every family, and
    nothing that only grows typed as a gauge."""
    from edgeflow.config import parse_config
    from edgeflow.runtime import Runtime

    cfg = parse_config(
        {
            "devices": [],
            "pipelines": [{"name": "p", "rules": [{"type": "deadband", "absolute": 1}]}],
            "uplink": {"type": "file", "path": "/dev/null"},
        },
        environ={},
    )
    rt = Runtime(cfg)
    text = rt.registry.render()
    helps = set(re.findall(r"^# HELP (\S+) ", text, re.M))
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    assert helps == set(types)
    for name in (
        "edgeflow_savings_ratio",
        "edgeflow_pipeline_savings_ratio",
        "edgeflow_edgex_json_bytes_total",
    ):
        assert name in types, name
    for name, kind in types.items():
        if name.startswith("edgeflow_") and kind == "gauge":
            assert not name.endswith(("_total", "_shipped", "_acked")), name
