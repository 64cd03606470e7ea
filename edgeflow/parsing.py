"""Reading YAML the way EdgeX (Go ``yaml.v3``) and Kubernetes read it, and turning pydantic errors
into key paths.

PyYAML implements YAML 1.1, where ``ON``, ``off``, ``yes`` are booleans, ``1:30`` is the integer 90 and
``2024-01-01`` a date. EdgeX and Kubernetes read YAML 1.2, where all of those are strings. The loader
here resolves plain scalars by the YAML 1.2 core schema (``true``/``false``, decimal, ``0x``/``0o``
integers, floats with or without a point, ``null``, ``.inf``, ``.nan``) and leaves everything else a
string. Duplicate keys in a mapping are an error, as in ``yaml.v3``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from edgeflow.errors import ConfigError

__all__ = [
    "config_error",
    "load_yaml",
    "load_yaml_documents",
    "parse_yaml_documents",
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


def validation_problems(exc: ValidationError, *, prefix: str = "", data: Any = None) -> list[tuple[str, str]]:
    """``(key_path, message)`` for each error of a pydantic :class:`ValidationError`.

    ``loc`` tuples become ``a.b[2].c`` paths (``("deviceResources", 3, "properties", "valueType")`` →
    ``deviceResources[3].properties.valueType``); ``prefix`` is put in front (``"devices[0]"``).
    Pydantic's internal loc parts (``function-after[...]``, union member tags) are dropped; given the
    validated ``data``, so are the tags of discriminated unions (``rules[0].max_error``, not
    ``rules[0].swing.max_error``).
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
        if err.get("type") == "extra_forbidden":
            msg = "unknown key (not allowed here)"
        elif err.get("type") == "missing":
            msg = "required key is missing"
        problems.append((path, msg))
    return problems


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
    message: str, source: str, exc: ValidationError, *, prefix: str = "", data: Any = None
) -> ConfigError:
    """A :class:`ConfigError` listing every problem of ``exc`` with its key path (``data``, the input
    that was validated, lets union tags be left out of the paths)."""
    return ConfigError(message, source=source, problems=validation_problems(exc, prefix=prefix, data=data))
