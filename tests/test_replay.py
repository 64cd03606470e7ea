"""``edgeflow replay`` end to end on small CSVs made here, checked against independent computations."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from edgeflow.cli.replay import main
from edgeflow.errors import ConfigError, ValueFormatError
from edgeflow.model import Event, Reading, ValueType, encode_add_event_request
from edgeflow.replay import load_rules
from edgeflow.replay._csv import parse_times, read_csv

T0 = 1_577_836_800  # 2020-01-01 00:00:00 UTC


def _write_csv(path: Path, rows: list[list[str]], *, sep: str = ";", crlf: bool = True) -> None:
    end = "\r\n" if crlf else "\n"
    path.write_bytes("".join(sep.join(r) + end for r in rows).encode())


def _signal(n: int) -> tuple[list[float], list[float]]:
    rng = np.random.default_rng(7)
    a = np.round(10 + np.cumsum(rng.normal(0, 0.4, n)), 3).tolist()
    c = np.round(np.sin(np.arange(n) / 5) * 3, 2).tolist()
    return a, c


@pytest.fixture
def small_csv(tmp_path: Path) -> Path:
    n = 60
    a, c = _signal(n)
    rows = [["datetime", "Flow RateRMS", "c"]]
    for i in range(n):
        rows.append([f"2020-01-01 00:{i // 60:02d}:{i % 60:02d}", repr(a[i]), repr(c[i])])
    p = tmp_path / "small.csv"
    _write_csv(p, rows)
    return p


def _rules(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "rules.yaml"
    p.write_text(text)
    return p


def _run(
    csv_path: Path, rules: Path, tmp_path: Path, *extra: str
) -> tuple[dict[str, object], list[list[str]]]:
    report = tmp_path / "report.json"
    recon = tmp_path / "recon.csv"
    args = ["--csv", str(csv_path), "--sep", ";", "--time-column", "datetime"]
    args += ["--value-column", "Flow RateRMS", "--value-column", "c", "--rules", str(rules)]
    args += ["--report", str(report), "--reconstruct", str(recon), "--batch-size", "7", *extra]
    assert main(args) == 0
    with recon.open(newline="") as fh:
        rows = list(csv.reader(fh, delimiter=";"))
    return json.loads(report.read_text()), rows


def test_report_matches_an_independent_computation(small_csv: Path, tmp_path: Path) -> None:
    """Deadband over EdgeX JSON: kept readings, bytes and errors computed here by hand."""
    rules = _rules(tmp_path, "- type: deadband\n  absolute: 0.5\n")
    report, recon = _run(small_csv, rules, tmp_path, "--encoding", "edgex-json")
    n = 60
    a, c = _signal(n)
    times = [(T0 + i) * 10**9 for i in range(n)]
    device, profile = "small", "replay"

    def one_event(resource: str, origin: int, value: float, tags: dict[str, object] | None = None) -> int:
        r = Reading(device, resource, profile, ValueType.FLOAT64, value, origin)
        ev = Event(device, profile, resource, origin, [r], tags=dict(tags or {}))
        return len(encode_add_event_request(ev))

    baseline = {"Flow RateRMS": 0, "c": 0}
    kept: dict[str, list[tuple[int, float]]] = {"Flow RateRMS": [], "c": []}
    for name, col in (("Flow RateRMS", a), ("c", c)):
        last: float | None = None
        for t, v in zip(times, col, strict=True):
            baseline[name] += one_event(name, t, v)
            if last is None or abs(v - last) > 0.5:  # Node-RED deadband, compare with the last sent
                kept[name].append((t, v))
                last = v
    n_kept = sum(len(k) for k in kept.values())
    assert report["readings_in"] == 2 * n
    assert report["readings_out"] == n_kept
    assert report["bytes_edgex_json"] == sum(baseline.values())
    # Shipped: one AddEventRequest per kept reading, with the stream id and sequence number tags.
    shipped = sum(
        one_event(name, t, v, {"edgeflowStream": "replay", "edgeflowSeq": 0})
        for name in kept
        for t, v in kept[name]
    )
    shipped += sum(len(str(s)) - 1 for s in range(n_kept))
    assert report["bytes_shipped"] == shipped
    assert report["savings"] == pytest.approx(1 - shipped / sum(baseline.values()))
    # Errors: hold the last kept value, as EdgeX's %e formatting delivers it.
    errors: dict[str, list[float]] = {}
    for name, col in (("Flow RateRMS", a), ("c", c)):
        held = dict(kept[name])
        cur = math.nan
        errors[name] = []
        for t, v in zip(times, col, strict=True):
            if t in held:
                cur = float(format(held[t], "e"))
            errors[name].append(abs(cur - v))
        col_report = report["columns"][name]  # type: ignore[index]
        assert col_report["max_abs_error"] == pytest.approx(max(errors[name]), abs=1e-12)
        assert col_report["mean_abs_error"] == pytest.approx(np.mean(errors[name]), abs=1e-12)
        assert col_report["bytes_edgex_json"] == baseline[name]
        assert col_report["readings_out"] == len(kept[name])
    every = errors["Flow RateRMS"] + errors["c"]
    assert report["max_abs_error"] == pytest.approx(max(every), abs=1e-12)
    assert report["mean_abs_error"] == pytest.approx(np.mean(every), abs=1e-12)
    # recon.csv: one row per input row, original timestamps, same column names.
    assert recon[0] == ["datetime", "Flow RateRMS", "c"]
    assert len(recon) == n + 1
    assert recon[1][0] == "2020-01-01 00:00:00"
    assert [abs(float(r[2]) - v) for r, v in zip(recon[1:], c, strict=True)] == pytest.approx(errors["c"])


def test_swing_over_compact_stays_within_the_bound(small_csv: Path, tmp_path: Path) -> None:
    rules = _rules(tmp_path, "- type: swing\n  max_error: 0.3\n")
    report, recon = _run(small_csv, rules, tmp_path)
    a, c = _signal(60)
    got_a = np.array([float(r[1]) for r in recon[1:]])
    got_c = np.array([float(r[2]) for r in recon[1:]])
    err = np.concatenate([np.abs(got_a - a), np.abs(got_c - c)])
    assert err.max() <= 0.3 + 1e-9
    assert report["max_abs_error"] == pytest.approx(err.max())
    assert report["encoding"] == "compact"
    assert 0 < report["readings_out"] < 120  # type: ignore[operator]
    assert report["bytes_shipped"] < report["bytes_edgex_json"]  # type: ignore[operator]
    assert report["unreconstructed"] == 0


def test_quantum_adds_at_most_half_a_quantum(small_csv: Path, tmp_path: Path) -> None:
    rules = _rules(tmp_path, "- type: swing\n  max_error: 0.25\n")
    report, recon = _run(small_csv, rules, tmp_path, "--quantum", "0.1")
    a, _ = _signal(60)
    err = np.abs(np.array([float(r[1]) for r in recon[1:]]) - a)
    assert err.max() <= 0.25 + 0.05 + 1e-9
    assert report["columns"]["c"]["quantum"] == 0.1  # type: ignore[index]


def test_unknown_time_format_names_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "bad.csv"
    _write_csv(p, [["t", "v"], ["2020-01-01T00:00:00Z", "1"], ["07/01/2014 02:00", "2"]], sep=",")
    rules = _rules(tmp_path, "- type: deadband\n  absolute: 1\n")
    code = main(["--csv", str(p), "--time-column", "t", "--value-column", "v", "--rules", str(rules)])
    assert code == 2
    err = capsys.readouterr().err
    assert "line 3" in err
    assert "07/01/2014 02:00" in err


def test_missing_column_and_bad_value_are_named(tmp_path: Path) -> None:
    p = tmp_path / "x.csv"
    _write_csv(p, [["t", "v"], ["1", "1.5"], ["2", "oops"]], sep=",")
    rules = _rules(tmp_path, "- type: deadband\n  absolute: 1\n")
    base = ["--csv", str(p), "--time-column", "t", "--rules", str(rules)]
    assert main([*base, "--value-column", "w"]) == 2
    with pytest.raises(ValueFormatError, match="no column 'w'"):
        read_csv(p, sep=",", time_column="t", value_columns=["w"])
    with pytest.raises(ValueFormatError, match=r"line 3: 'v' value 'oops'"):
        read_csv(p, sep=",", time_column="t", value_columns=["v"])


def test_rule_errors_name_the_file_and_key_path(tmp_path: Path) -> None:
    p = _rules(tmp_path, "- type: deadband\n  absolute: 1\n- type: swing\n  max_eror: 2\n")
    with pytest.raises(ConfigError) as info:
        load_rules(p)
    text = str(info.value)
    assert str(p) in text
    assert "[1].max_eror" in text
    with pytest.raises(ConfigError, match="non-empty list"):
        load_rules(_rules(tmp_path, "type: swing\n"))


@pytest.mark.parametrize(
    ("texts", "expected_s"),
    [
        (["2014-01-07 02:55:00", "2014-01-07 02:00:00"], [1389063300, 1389060000]),
        (["2014-01-07T02:55:00Z", "2014-01-07T03:00:00+01:00"], [1389063300, 1389060000]),
        (["2014-01-07T02:55:00.5"], [1389063300.5]),
        (["1389063300", "1389060000"], [1389063300, 1389060000]),
        (["1389063300000", "1389060000000"], [1389063300, 1389060000]),
        (["1389063300000000000"], [1389063300]),
        (["1389063300.25"], [1389063300.25]),
    ],
)
def test_time_formats(texts: list[str], expected_s: list[float]) -> None:
    got = parse_times(texts, Path("f.csv"))
    assert got.tolist() == [round(s * 10**9) for s in expected_s]


def test_epoch_column_with_a_stray_date_is_an_error() -> None:
    with pytest.raises(ValueFormatError, match="line 3"):
        parse_times(["1389063300", "2014-01-07"], Path("f.csv"))
