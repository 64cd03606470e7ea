from __future__ import annotations

import math

from edgeflow.metrics import Registry, Sample


def test_render_groups_by_name_with_help_type_and_escaped_labels() -> None:
    reg = Registry()
    reg.add_collector(
        lambda: [
            Sample("reads_total", 3, (("device", 'a"b'),), help="reads", kind="counter"),
            Sample("reads_total", 4.5, (("device", "c\\d"),), kind="counter"),
            Sample("up", 1),
        ]
    )
    text = reg.render()
    assert text.splitlines() == [
        "# HELP edgeflow_reads_total reads",
        "# TYPE edgeflow_reads_total counter",
        'edgeflow_reads_total{device="a\\"b"} 3',
        'edgeflow_reads_total{device="c\\\\d"} 4.5',
        "# TYPE edgeflow_up gauge",
        "edgeflow_up 1",
    ]


def test_special_values_and_a_failing_collector() -> None:
    reg = Registry(prefix="")

    def broken() -> list[Sample]:
        raise RuntimeError("boom")

    reg.add_collector(broken)
    reg.add_collector(lambda: [Sample("a", math.nan), Sample("b", math.inf)])
    assert reg.render().splitlines()[-3:] == ["a NaN", "# TYPE b gauge", "b +Inf"]
