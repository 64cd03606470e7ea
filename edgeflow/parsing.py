"""Reading YAML the way EdgeX (Go ``yaml.v3``) and Kubernetes read it, the one duration parser, and
turning pydantic errors into key paths.

PyYAML implements YAML 1.1, where ``ON``, ``off``, ``yes`` are booleans, ``1:30`` is the integer 90 and
``2024-01-01`` a date. EdgeX and Kubernetes read YAML 1.2, where all of those are strings. The loader
here resolves plain scalars by the YAML 1.2 core schema (``true``/``false``, decimal, ``0x``/``0o``
integers, floats with or without a point, ``null``, ``.inf``, ``.nan``) and leaves everything else a
string. Duplicate keys in a mapping are an error, as in ``yaml.v3``. Config files, environment overrides
(:func:`parse_yaml_value`), profiles, device lists, rules files and CRDs are all read here.

Durations (:func:`parse_duration`) are written the way Go's ``time.ParseDuration`` reads them, as EdgeX
does (``"250ms"``, ``"1m30s"``, ``"1.5h"``; units ``ns us µs ms s m h``), plus ``d`` for days; a bare
number, or a string holding only a number, is seconds (``30``, ``0.5``, ``"2.5"``). Every duration a user
writes, anywhere in the config, goes through it: the annotated types :data:`PositiveSeconds`,
:data:`NonNegativeSeconds`, :data:`PositiveNanoseconds`, :data:`NonNegativeNanoseconds` and
:data:`DurationText` put it into pydantic models, so a refused value is reported at its key path.
"""

from __future__ import annotations

import difflib
import functools
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import ROUND_HALF_EVEN, Decimal
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import AfterValidator, BeforeValidator, TypeAdapter, ValidationError, WithJsonSchema

from edgeflow.errors import ConfigError, ValueFormatError

__all__ = [
    "NS_PER_SECOND",
    "DurationText",
    "ListenAddress",
    "NonNegativeNanoseconds",
    "NonNegativeSeconds",
    "PositiveNanoseconds",
    "PositiveSeconds",
    "PropertyReader",
    "config_error",
    "did_you_mean",
    "duration_ns",
    "duration_seconds",
    "load_yaml",
    "load_yaml_documents",
    "parse_duration",
    "parse_listen",
    "parse_yaml_documents",
    "parse_yaml_value",
    "validation_problems",
]

_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Yaml12Loader(_BaseLoader):  # type: ignore[valid-type,misc]
    """SafeLoader with YAML 1.2 core-schema resolution and duplicate-key detection."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                first = seen.get(key)
            except TypeError:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    "found an unhashable key",
                    key_node.start_mark,
                ) from None
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r} (first defined on line {first.start_mark.line + 1})",
                    key_node.start_mark,
                )
            seen[key] = key_node
        result: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return result


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    text = str(loader.construct_scalar(node)).replace("_", "")
    sign = -1 if text.startswith("-") else 1
    body = text.lstrip("+-").lower()
    if body.startswith("0x"):
        return sign * int(body[2:], 16)
    if body.startswith("0o"):
        return sign * int(body[2:], 8)
    return sign * int(body, 10)


def _construct_float(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> float:
    text = str(loader.construct_scalar(node)).replace("_", "").lower()
    if text.endswith((".inf", "inf")):
        return float("-inf") if text.startswith("-") else float("inf")
    if text.endswith("nan"):
        return float("nan")
    return float(text)


def _construct_bool(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> bool:
    return str(loader.construct_scalar(node)).lower() == "true"


_Yaml12Loader.yaml_implicit_resolvers = {}
for _tag, _regex, _first in (
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("tag:yaml.org,2002:int", r"^[-+]?(?:0x[0-9a-fA-F_]+|0o[0-7_]+|[0-9][0-9_]*)$", "-+0123456789"),
    (
        "tag:yaml.org,2002:float",
        r"^(?:[-+]?(?:\.[0-9]+|[0-9][0-9_]*(?:\.[0-9_]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        "-+.0123456789",
    ),
    ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    ("tag:yaml.org,2002:merge", r"^(?:<<)$", "<"),
):
    _Yaml12Loader.add_implicit_resolver(_tag, re.compile(_regex), list(_first))
_Yaml12Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_Yaml12Loader.add_constructor("tag:yaml.org,2002:float", _construct_float)
_Yaml12Loader.add_constructor("tag:yaml.org,2002:bool", _construct_bool)
_Yaml12Loader.add_constructor("tag:yaml.org,2002:timestamp", _Yaml12Loader.construct_yaml_str)


def parse_yaml_documents(text: str, source: str) -> list[Any]:
    """Every YAML document in ``text`` (empty documents dropped); :class:`ConfigError` on bad YAML."""
    try:
        docs = list(yaml.load_all(text, Loader=_Yaml12Loader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = " ".join(p for p in (exc.context, exc.problem) if p)
        raise ConfigError(f"not valid YAML: {where}{problem}", source=source) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {exc}", source=source) from None
    return [d for d in docs if d is not None]


def parse_yaml_value(text: str, source: str) -> Any:
    """One YAML value written inline (an environment variable's value): a scalar resolved by the YAML 1.2
    core schema (``off`` and ``1:30`` stay strings, ``7`` is an int), or a flow list or mapping.
    ``None`` for an empty or ``null`` text; :class:`ConfigError` on bad YAML or several documents."""
    docs = parse_yaml_documents(text, source)
    if len(docs) > 1:
        raise ConfigError(f"holds {len(docs)} YAML documents; expected one value", source=source)
    return docs[0] if docs else None


def load_yaml_documents(path: str | Path) -> tuple[list[Any], str]:
    """Read ``path`` (UTF-8, a BOM tolerated) and return its YAML documents and the source name."""
    p = Path(path)
    source = str(p)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read file: {exc.strerror or exc}", source=source) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text (byte {exc.start})", source=source) from None
    return parse_yaml_documents(text, source), source


def load_yaml(path: str | Path) -> Any:
    """The one YAML document of ``path`` (``None`` when it is empty); :class:`ConfigError` when the file
    cannot be read, is not UTF-8, is not YAML or holds several documents."""
    docs, source = load_yaml_documents(path)
    if len(docs) > 1:
        raise ConfigError(f"holds {len(docs)} YAML documents; expected one", source=source)
    return docs[0] if docs else None


# --------------------------------------------------------------------------------------------------
# Durations
# --------------------------------------------------------------------------------------------------

NS_PER_SECOND = 10**9
_UNIT_NS = {
    "ns": 1,
    "us": 10**3,
    "µs": 10**3,  # U+00B5 micro sign, as Go accepts
    "μs": 10**3,  # U+03BC Greek mu, as Go accepts
    "ms": 10**6,
    "s": NS_PER_SECOND,
    "m": 60 * NS_PER_SECOND,
    "h": 3600 * NS_PER_SECOND,
    "d": 86400 * NS_PER_SECOND,
}
_DECIMAL = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_PART = re.compile(rf"({_DECIMAL})(ns|us|µs|μs|ms|s|m|h|d)")
_BARE_NUMBER = re.compile(rf"[-+]?{_DECIMAL}(?:[eE][-+]?[0-9]+)?")
_MAX_NS = 2**63 - 1  # Go's time.Duration is an int64 of nanoseconds
_HINT = "write seconds (30, 0.5) or a number with a unit (250ms, 1m30s, 1.5h, 1d; units ns us µs ms s m h d)"
#: The JSON Schema pattern of a duration string (unsigned; a sign is read, negatives are refused).
DURATION_PATTERN = (
    rf"^\s*\+?(?:{_DECIMAL}(?:ns|us|µs|μs|ms|s|m|h|d))+\s*$|^\s*\+?{_DECIMAL}(?:[eE][-+]?[0-9]+)?\s*$"
)


def _to_ns(number: Decimal, unit_ns: int) -> int:
    # checked before multiplying: "1e999999" must neither overflow Decimal nor build a huge integer
    ns = number * unit_ns if number.adjusted() < 20 else Decimal(_MAX_NS + 1)
    if abs(ns) > _MAX_NS:
        raise OverflowError
    return int(ns.to_integral_value(rounding=ROUND_HALF_EVEN))


def parse_duration(value: object) -> int:
    """A duration in integer nanoseconds (may be negative), from Go ``time.ParseDuration`` syntax plus
    ``d`` (days), or from seconds as a number or a numeric string. Exact to the nanosecond.

    >>> parse_duration("1m30s"), parse_duration("250ms"), parse_duration(0.5), parse_duration("1d")
    (90000000000, 250000000, 500000000, 86400000000000)

    Raises :class:`ValueFormatError` (a ``ValueError``) naming the value when it is not a duration.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueFormatError(f"{value!r} is not a duration; {_HINT}")
    try:
        if isinstance(value, int):
            ns = value * NS_PER_SECOND
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise ValueFormatError(f"{value!r} is not a duration; it must be finite")
            ns = _to_ns(Decimal(repr(value)), NS_PER_SECOND)
        else:
            text = value.strip()
            if _BARE_NUMBER.fullmatch(text):
                ns = _to_ns(Decimal(text), NS_PER_SECOND)
            else:
                ns = _parse_go_duration(text, value)
        if abs(ns) > _MAX_NS:
            raise OverflowError
    except OverflowError:
        raise ValueFormatError(f"{value!r} is too long a duration (at most about 292 years)") from None
    return ns


def _parse_go_duration(text: str, original: str) -> int:
    sign = -1 if text.startswith("-") else 1
    body = text[1:] if text[:1] in ("-", "+") else text
    total = 0
    pos = 0
    while pos < len(body):
        m = _PART.match(body, pos)
        if m is None:
            break
        total += _to_ns(Decimal(m.group(1)), _UNIT_NS[m.group(2)])
        pos = m.end()
    if not body or pos != len(body):
        raise ValueFormatError(f"{original!r} is not a duration; {_HINT}")
    return sign * total


def duration_ns(value: object, *, zero: bool = False) -> int:
    """:func:`parse_duration`, refusing a negative duration, and zero unless ``zero`` (where 0 means
    "off")."""
    ns = parse_duration(value)
    if ns < 0:
        raise ValueFormatError(f"must not be negative, got {value!r}")
    if ns == 0 and not zero:
        raise ValueFormatError(f"must be longer than 0, got {value!r}")
    return ns


def duration_seconds(value: object, *, zero: bool = False) -> float:
    """:func:`duration_ns` in seconds (a float)."""
    return duration_ns(value, zero=zero) / NS_PER_SECOND


def _duration_text(value: object) -> str:
    duration_ns(value)
    return value.strip() if isinstance(value, str) else str(value)


def _json_schema(zero: bool) -> WithJsonSchema:
    number: dict[str, Any] = {"type": "number", "minimum" if zero else "exclusiveMinimum": 0}
    return WithJsonSchema(
        {
            "anyOf": [number, {"type": "string", "pattern": DURATION_PATTERN}],
            "description": "a duration: seconds, or a number with a unit (250ms, 1m30s, 1.5h, 1d)",
        }
    )


PositiveSeconds = Annotated[float, BeforeValidator(duration_seconds), _json_schema(False)]
"""A duration longer than 0, held in seconds (intervals, timeouts, backoff)."""
NonNegativeSeconds = Annotated[
    float, BeforeValidator(partial(duration_seconds, zero=True)), _json_schema(True)
]
"""A duration of 0 or more, held in seconds (0 means "off": batching delay, idle timeout)."""
PositiveNanoseconds = Annotated[int, BeforeValidator(duration_ns), _json_schema(False)]
"""A duration longer than 0, held in integer nanoseconds (rules: window size, heartbeat)."""
NonNegativeNanoseconds = Annotated[int, BeforeValidator(partial(duration_ns, zero=True)), _json_schema(True)]
"""A duration of 0 or more, held in integer nanoseconds (rules: allowed lateness, comp_min)."""
DurationText = Annotated[str, BeforeValidator(_duration_text), _json_schema(False)]
"""A duration longer than 0, kept as the text written (EdgeX writes AutoEvent ``interval`` as a string);
convert it with :func:`parse_duration`."""


def parse_listen(text: str) -> tuple[str, int]:
    """``"host:port"`` → ``(host, port)``; a ValueError saying what is wrong otherwise."""
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f"{text!r} is not host:port (e.g. 0.0.0.0:9464 or 127.0.0.1:9464)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"{text!r}: write an IPv6 address in brackets, e.g. [::1]:9464")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r}: the port must be a number from 0 to 65535")
    return host, int(port)


def _check_listen(text: str) -> str:
    parse_listen(text)
    return text


ListenAddress = Annotated[str, AfterValidator(_check_listen)]
"""A ``host:port`` to listen on, checked by :func:`parse_listen` (metrics, the mapper REST API)."""


def _key_path(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _drop_tags(loc: Sequence[int | str], data: Any) -> list[int | str]:
    """``loc`` without the tags of discriminated unions: walking ``data`` along ``loc``, a string part
    that is not a key of the mapping there but is its ``type`` value (``rules[0].swing.max_eror``) is
    the member's tag, not a key the user wrote."""
    out: list[int | str] = []
    node: Any = data
    for part in loc:
        if (
            isinstance(node, Mapping)
            and isinstance(part, str)
            and part not in node
            and node.get("type") == part
        ):
            continue
        out.append(part)
        if isinstance(node, Mapping):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            node = None
    return out


def validation_problems(
    exc: ValidationError, *, prefix: str = "", data: Any = None, model: Any = None
) -> list[tuple[str, str]]:
    """``(key_path, message)`` for each error of a pydantic :class:`ValidationError`.

    ``loc`` tuples become ``a.b[2].c`` paths (``("deviceResources", 3, "properties", "valueType")`` →
    ``deviceResources[3].properties.valueType``); ``prefix`` is put in front (``"devices[0]"``).
    Pydantic's internal loc parts (``function-after[...]``, union member tags) are dropped; given the
    validated ``data``, so are the tags of discriminated unions (``rules[0].max_error``, not
    ``rules[0].swing.max_error``). Given the ``model``, an unknown key gets a "did you mean" from the keys
    the model's tree accepts.
    """
    problems: list[tuple[str, str]] = []
    for err in exc.errors(include_url=False):
        loc = [p for p in err.get("loc", ()) if isinstance(p, int) or not _is_internal_loc(p)]
        if data is not None:
            loc = _drop_tags(loc, data)
        path = _key_path(loc)
        if prefix:
            path = f"{prefix}{'' if not path or path.startswith('[') else '.'}{path}"
        msg = str(err.get("msg", "invalid"))
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        kind = err.get("type")
        if kind == "extra_forbidden":
            last = loc[-1] if loc else ""
            hint = ""
            if model is not None and isinstance(last, str):
                words = _vocabulary(model)
                # a key that exists elsewhere in the tree is misplaced, not misspelt
                hint = "" if last in words else did_you_mean(last, words)
            msg = f"unknown key{hint or ' (not allowed here)'}"
        elif kind == "missing":
            msg = "required key is missing"
        elif kind == "union_tag_invalid":
            ctx = err.get("ctx") or {}
            tag = str(ctx.get("tag", ""))
            expected = [t.strip().strip("'") for t in str(ctx.get("expected_tags", "")).split(",")]
            field = str(ctx.get("discriminator", "'type'")).strip("'")
            msg = f"unknown {field} {tag!r}; expected one of {', '.join(expected)}"
            path = f"{path}.{field}" if path else field
            msg += did_you_mean(tag, expected)
        problems.append((path, msg))
    return problems


class PropertyReader:
    """Reads a map of user-written properties (a device's protocol properties, as EdgeX gives them:
    strings, or YAML scalars) into typed values, one converter per key, and collects every problem with
    its key path, so one :class:`~edgeflow.errors.ConfigError` names them all::

        r = PropertyReader(device.protocols["modbus-tcp"], "devices[0].protocols.modbus-tcp")
        r.take("UnitID", lambda v: int(v), 1)
        if r.problems: raise ConfigError(..., problems=r.problems)
        unit = r.values["UnitID"]
    """

    def __init__(self, props: Mapping[str, Any], path: str) -> None:
        self.props = props
        self.path = path
        self.values: dict[str, Any] = {}
        self.problems: list[tuple[str, str]] = []

    def take(self, key: str, conv: Callable[[Any], Any], default: Any) -> None:
        """``values[key]``: ``conv(raw)``, or ``default`` when the key is absent or empty; a
        ``ValueError`` from ``conv`` becomes a problem at ``path.key``."""
        raw = self.props.get(key)
        if raw is None or raw == "":
            self.values[key] = default
            return
        try:
            self.values[key] = conv(raw)
        except ValueError as exc:
            self.problems.append((f"{self.path}.{key}", str(exc)))


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``" (did you mean 'x'?)"`` when one of ``choices`` is close to ``word``, else ``""``; the
    suffix every "unknown key/name" message of edgeflow ends with."""
    options = {c.lower(): c for c in choices}
    match = difflib.get_close_matches(word.lower(), list(options), n=1, cutoff=0.75)
    return f" (did you mean {options[match[0]]!r}?)" if match else ""


@functools.cache
def _vocabulary(model: Any) -> frozenset[str]:
    """Every key any model reachable from ``model`` (a model class or a type such as a union of
    models) accepts, names and aliases, for suggestions."""
    words: set[str] = set()
    adapter: TypeAdapter[Any] = TypeAdapter(model)
    for by_alias in (True, False):
        schema = adapter.json_schema(by_alias=by_alias)
        for node in [schema, *schema.get("$defs", {}).values()]:
            words.update(node.get("properties", {}))
    return frozenset(words)


def _is_internal_loc(part: str) -> bool:
    return (
        "[" in part
        and part.endswith("]")
        and part.split("[", 1)[0]
        in {
            "function-after",
            "function-before",
            "function-wrap",
            "function-plain",
            "tagged-union",
            "union",
            "constrained-str",
            "json-or-python",
        }
    )


def config_error(
    message: str,
    source: str,
    exc: ValidationError,
    *,
    prefix: str = "",
    data: Any = None,
    model: Any = None,
) -> ConfigError:
    """A :class:`ConfigError` listing every problem of ``exc`` with its key path (``data``, the input
    that was validated, lets union tags be left out of the paths; ``model`` gives "did you mean")."""
    return ConfigError(
        message, source=source, problems=validation_problems(exc, prefix=prefix, data=data, model=model)
    )
