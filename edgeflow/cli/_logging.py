"""Logging for the command line: ``--log-level``, ``--log-format text|json`` and ``--log-libs``.

edgeflow's own loggers (``edgeflow``, ``connectors``) log at ``--log-level`` (default ``info``: a start-up
line per part, warnings, errors). The libraries underneath (pymodbus, asyncua, paho, grpc, psycopg) stay at
``--log-libs`` (default ``warning``), so their debug output, pymodbus's hex frame dumps among it, shows only
when asked for. Everything goes to standard error; ``json`` writes one object per line with ``ts``,
``level``, ``logger``, ``message`` (and ``exc`` for a traceback), for log collectors.
"""

from __future__ import annotations

import json
import logging
import sys
import time

__all__ = ["LEVELS", "JsonFormatter", "setup_logging"]

#: Accepted level names, lowest first.
LEVELS = ("debug", "info", "warning", "error")

_OWN = ("edgeflow", "connectors")


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def setup_logging(level: str = "info", fmt: str = "text", libs: str = "warning") -> None:
    """Configure the root handler once for the process (idempotent: replaces edgeflow's handler)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name("edgeflow-cli")
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "edgeflow-cli"]:
        root.removeHandler(old)
    root.addHandler(handler)
    own = getattr(logging, level.upper())
    lib = getattr(logging, libs.upper())
    root.setLevel(min(own, lib))
    handler.setLevel(min(own, lib))
    for name in _OWN:
        logging.getLogger(name).setLevel(own)
    # Libraries log through their own loggers, which inherit the root level; pin them at ``libs``
    # so that --log-level debug shows edgeflow's debug lines without pymodbus's frame dumps.
    for name in ("pymodbus", "asyncua", "paho", "grpc", "psycopg", "aiosqlite", "hpack", "urllib3"):
        logging.getLogger(name).setLevel(lib)
