"""MQTT topic names and filters: escaping names into single levels, checking what may be published
or subscribed to, and matching topics against templates with named levels.

A device called ``a/b``, ``+`` or ``#`` must not be able to reach another device's topics, so every
name that goes into a topic goes through :func:`escape_level`: ``/``, ``+``, ``#`` and ``%`` are
percent-encoded (``a/b`` → ``a%2Fb``), which keeps the name one level and wildcard-free.
:func:`unescape_level` is its inverse and refuses a level no name escapes to.

No paho here: these are plain string functions shared by every MQTT client in edgeflow.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

__all__ = [
    "TopicTemplate",
    "escape_level",
    "topic_matches",
    "unescape_level",
    "validate_filter",
    "validate_topic",
]

_ESCAPES: Final = str.maketrans({"%": "%25", "/": "%2F", "+": "%2B", "#": "%23"})
_UNESCAPES: Final = {"25": "%", "2F": "/", "2B": "+", "23": "#"}
_PERCENT: Final = re.compile(r"%(..)?")
#: The longest topic MQTT can carry, in UTF-8 bytes.
MAX_TOPIC_BYTES: Final = 65535


def escape_level(name: str) -> str:
    """``name`` as one topic level: ``%``, ``/``, ``+`` and ``#`` percent-encoded.

    >>> escape_level("line 1/pump+#")
    'line 1%2Fpump%2B%23'
    """
    return name.translate(_ESCAPES)


def unescape_level(level: str) -> str:
    """The name :func:`escape_level` turned into ``level``; ``ValueError`` if no name escapes to it (a
    ``%`` not followed by ``25``, ``2F``, ``2B`` or ``23``, case-insensitive).

    >>> unescape_level("a%2Fb")
    'a/b'
    """
    if "%" not in level:
        return level

    def sub(m: re.Match[str]) -> str:
        code = (m.group(1) or "").upper()
        try:
            return _UNESCAPES[code]
        except KeyError:
            raise ValueError(f"topic level {level!r}: '%' must start %25, %2F, %2B or %23") from None

    return _PERCENT.sub(sub, level)


def _check_text(topic: str, what: str) -> None:
    if not topic:
        raise ValueError(f"{what} must not be empty")
    if "\x00" in topic:
        raise ValueError(f"{what} {topic!r} contains a NUL character")
    if len(topic.encode("utf-8", "surrogatepass")) > MAX_TOPIC_BYTES:
        raise ValueError(f"{what} is longer than {MAX_TOPIC_BYTES} bytes")


def validate_topic(topic: str) -> str:
    """``topic`` if it can be published to (no wildcards, not empty, no NUL); else ``ValueError``."""
    _check_text(topic, "topic")
    if "+" in topic or "#" in topic:
        raise ValueError(f"topic {topic!r}: wildcards (+, #) cannot be published to")
    return topic


def validate_filter(topic_filter: str) -> str:
    """``topic_filter`` if it can be subscribed to (wildcards fill whole levels, ``#`` last)."""
    _check_text(topic_filter, "topic filter")
    levels = topic_filter.split("/")
    for i, level in enumerate(levels):
        if level == "#":
            if i != len(levels) - 1:
                raise ValueError(f"topic filter {topic_filter!r}: '#' must be the last level")
        elif level != "+" and ("+" in level or "#" in level):
            raise ValueError(f"topic filter {topic_filter!r}: wildcards must fill a whole level")
    return topic_filter


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Whether ``topic`` matches ``topic_filter`` (MQTT rules; ``$``-topics only match a filter that
    names their first level)."""
    f = topic_filter.split("/")
    t = topic.split("/")
    if t[0].startswith("$") and f[0] in ("+", "#"):
        return False
    for i, level in enumerate(f):
        if level == "#":
            return True
        if i >= len(t) or (level != "+" and level != t[i]):
            return False
    return len(f) == len(t)


@dataclass(frozen=True, slots=True)
class TopicTemplate:
    """A topic filter whose levels may be named: ``sensors/{device}/{source}/#``. Each ``{name}``
    fills one whole level and subscribes as ``+``; :meth:`match` gives the unescaped names of a topic.

    >>> t = TopicTemplate.parse("sensors/{device}/data")
    >>> t.filter, t.match("sensors/a%2Fb/data")
    ('sensors/+/data', {'device': 'a/b'})
    """

    text: str
    levels: tuple[str, ...]
    names: tuple[tuple[int, str], ...]
    filter: str

    @classmethod
    def parse(cls, text: str, *, allowed: frozenset[str] | None = None) -> TopicTemplate:
        levels = tuple(text.split("/"))
        names: list[tuple[int, str]] = []
        sub: list[str] = []
        for i, level in enumerate(levels):
            if level.startswith("{") and level.endswith("}"):
                name = level[1:-1]
                if not name.isidentifier():
                    raise ValueError(f"topic {text!r}: {level!r} is not a level name")
                if allowed is not None and name not in allowed:
                    raise ValueError(
                        f"topic {text!r}: unknown level {level}; allowed: "
                        + ", ".join("{" + n + "}" for n in sorted(allowed))
                    )
                if any(n == name for _, n in names):
                    raise ValueError(f"topic {text!r}: {level} appears twice")
                names.append((i, name))
                sub.append("+")
            elif "{" in level or "}" in level:
                raise ValueError(f"topic {text!r}: a {{name}} must fill a whole level")
            else:
                sub.append(level)
        topic_filter = validate_filter("/".join(sub))
        return cls(text, levels, tuple(names), topic_filter)

    def has(self, name: str) -> bool:
        return any(n == name for _, n in self.names)

    def match(self, topic: str) -> dict[str, str] | None:
        """The named levels of ``topic``, unescaped, or None if it does not match. A named level that
        no name escapes to raises ``ValueError``."""
        if not topic_matches(self.filter, topic):
            return None
        parts = topic.split("/")
        return {name: unescape_level(parts[i]) for i, name in self.names}

    def render(self, **names: str) -> str:
        """The topic with each named level filled by its escaped name (a template without wildcards)."""
        levels = list(self.levels)
        for i, name in self.names:
            levels[i] = escape_level(names[name])
        return validate_topic("/".join(levels))
