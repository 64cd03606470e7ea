"""The small JSON path a topic mapping uses to find a value in a payload.

``$`` is the whole payload; ``.name`` a key; ``[3]`` an array index (``[-1]`` the last);
``['any key']`` or ``["any key"]`` a key with dots, spaces or brackets. A leading ``$`` may be
left out: ``sensors[0].temp`` is ``$.sensors[0].temp``. No filters, no wildcards: one path, one
value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["JsonPath"]

_NAME: Final = re.compile(r"[^.\[\]'\"]+")
_INDEX: Final = re.compile(r"\[(-?\d+)\]")
_QUOTED: Final = re.compile(r"""\[(?:'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)")\]""")


@dataclass(frozen=True, slots=True)
class JsonPath:
    text: str
    steps: tuple[str | int, ...]

    @classmethod
    def parse(cls, text: str) -> JsonPath:
        """Raises ``ValueError`` saying where the path stops making sense."""
        t = text.strip()
        if not t:
            raise ValueError("empty JSON path")
        pos = 1 if t.startswith("$") else 0
        steps: list[str | int] = []
        first = pos == 0
        while pos < len(t):
            if t[pos] == ".":
                m = _NAME.match(t, pos + 1)
                if m is None:
                    raise ValueError(f"JSON path {text!r}: expected a key after '.' at {pos}")
                steps.append(m.group(0))
                pos = m.end()
            elif t[pos] == "[":
                m = _INDEX.match(t, pos)
                if m is not None:
                    steps.append(int(m.group(1)))
                    pos = m.end()
                    first = False
                    continue
                m = _QUOTED.match(t, pos)
                if m is None:
                    raise ValueError(f"JSON path {text!r}: expected [number] or ['key'] at {pos}")
                raw = m.group(1) if m.group(1) is not None else m.group(2)
                steps.append(re.sub(r"\\(.)", r"\1", raw))
                pos = m.end()
            elif first:
                m = _NAME.match(t, pos)
                if m is None:  # pragma: no cover - t[pos] is not '.', '[' and _NAME takes the rest
                    raise ValueError(f"JSON path {text!r}: unexpected {t[pos]!r} at {pos}")
                steps.append(m.group(0))
                pos = m.end()
            else:
                raise ValueError(f"JSON path {text!r}: unexpected {t[pos]!r} at {pos}")
            first = False
        return cls(text, tuple(steps))

    def get(self, doc: Any) -> Any:
        """The value at this path; ``KeyError`` naming the path if it is not there."""
        node = doc
        for step in self.steps:
            if isinstance(step, int):
                if not isinstance(node, list) or not -len(node) <= step < len(node):
                    raise KeyError(self.text)
                node = node[step]
            else:
                if not isinstance(node, dict) or step not in node:
                    raise KeyError(self.text)
                node = node[step]
        return node

    def __str__(self) -> str:
        return self.text
