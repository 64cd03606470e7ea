"""The PostgreSQL (and TimescaleDB) sink, and reading back what the cloud stored.

:class:`PostgresStore` stores decoded batches through psycopg 3 and reads them back. Exactly-once is the
database's: every tracked batch (one with an edgeflow stream id and sequence number) gets a row in
``edgeflow.batches`` keyed by ``(stream, seq)``, inserted **in the same transaction** as the batch's
readings with ``ON CONFLICT DO NOTHING``. A batch whose key exists was stored before — by this receiver
before a restart, or by another receiver of the group — and nothing of it is written again. Two
receivers storing the same batch at the same moment serialise on the key: the second waits for the
first to commit, then sees the conflict.

Schema (in the ``edgeflow`` schema; created or migrated when the store opens, under an advisory lock,
the version recorded in ``edgeflow.schema_version``):

``series``
    ``id``, ``device``, ``resource``, ``value_type``, ``profile``, ``units``, ``source`` — one row per
    device resource and value type, unique on ``(device, resource, value_type)``.
``streams``
    ``stream`` (the edge's stream id), ``first_seen``.
``batches``
    ``stream``, ``seq`` (primary key), ``readings``, ``encoding``, ``alarm``, ``topic``, ``receiver``
    (who stored it), ``stored_at``.
``readings``
    ``series`` (→ ``series.id``, which carries the value type), ``origin`` (bigint, ns since the epoch,
    exact as EdgeX has it), ``value`` (float8; NULL for a non-numeric reading), ``value_obj`` (jsonb:
    the value of a non-numeric reading), ``interp`` (``'h'`` hold / ``'l'`` linear: how the cloud
    reconstructs between this point and the next), ``start`` (window start of an aggregate, ns, else
    NULL). Index ``(series, origin)``. With the TimescaleDB extension available it is a hypertable on
    ``origin`` (one-day chunks); without it, a plain table with a BRIN index on ``origin`` as well.
``series_tables``
    ``hash`` (primary key), ``body``: the series tables of the ``compact`` encoding (a message refers to
    its stream's table by hash; the table itself travels only now and then), put here by the receiver
    that got the message carrying one, so every receiver of the group decodes what refers to it.
``readings_view``
    readings with device, resource, value type, ``time`` (timestamptz) and ``interpolation`` spelled out.
``gaps``
    per stream, each run of missing sequence numbers (``first_missing``, ``last_missing``, ``missing``),
    counted from 0 to the highest stored.
``value_at(device, resource, at_ns)``
    the reconstructed value of a series at one time, in SQL (same rule as :meth:`PostgresStore.series_at`).

Readings are written with binary ``COPY``, the rows of numeric series built column-wise with numpy.
"""

from __future__ import annotations

import logging
import struct
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import orjson
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from edgeflow.cloud.sinks import SinkError, StoreItem, jsonable
from edgeflow.codec import DecodedSeries, reconstruct

__all__ = ["SCHEMA_VERSION", "PostgresStore", "check_dsn"]

log = logging.getLogger(__name__)

_COPY_HEADER: Final = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_COPY_TRAILER: Final = struct.pack(">h", -1)
_NCOLS: Final = 6  # series, origin, value, interp, start, value_obj

_ROW_FIELDS: Final = [
    ("nf", ">i2"),
    ("l_series", ">i4"),
    ("series", ">i4"),
    ("l_origin", ">i4"),
    ("origin", ">i8"),
    ("l_value", ">i4"),
    ("value", ">f8"),
    ("l_interp", ">i4"),
    ("interp", "S1"),
    ("l_start", ">i4"),
]
_ROW_PLAIN: Final = np.dtype([*_ROW_FIELDS, ("l_obj", ">i4")])
_ROW_WINDOW: Final = np.dtype([*_ROW_FIELDS, ("start", ">i8"), ("l_obj", ">i4")])

#: Day-long chunks when the readings table is a TimescaleDB hypertable (origin is in ns).
_CHUNK_NS: Final = 86_400 * 1_000_000_000

_MIGRATIONS: Final[list[str]] = [
    # 1: the tables, the views, value_at
    """
    CREATE TABLE edgeflow.series (
        id         serial PRIMARY KEY,
        device     text NOT NULL,
        resource   text NOT NULL,
        value_type text NOT NULL,
        profile    text NOT NULL DEFAULT '',
        units      text NOT NULL DEFAULT '',
        source     text NOT NULL DEFAULT '',
        UNIQUE (device, resource, value_type)
    );
    CREATE TABLE edgeflow.streams (
        stream     text PRIMARY KEY,
        first_seen timestamptz NOT NULL DEFAULT now()
    );
    CREATE TABLE edgeflow.batches (
        stream    text NOT NULL,
        seq       bigint NOT NULL,
        readings  integer NOT NULL,
        encoding  text NOT NULL,
        alarm     boolean NOT NULL DEFAULT false,
        topic     text NOT NULL DEFAULT '',
        receiver  text NOT NULL DEFAULT '',
        stored_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (stream, seq)
    );
    CREATE TABLE edgeflow.readings (
        series    integer NOT NULL,
        origin    bigint NOT NULL,
        value     double precision,
        interp    "char" NOT NULL DEFAULT 'h',
        start     bigint,
        value_obj jsonb
    );
    CREATE INDEX readings_series_origin ON edgeflow.readings (series, origin);
    CREATE VIEW edgeflow.readings_view AS
        SELECT s.device, s.resource, s.profile, s.value_type, s.units,
               to_timestamp(r.origin / 1e9) AS time, r.origin, r.value, r.value_obj,
               CASE r.interp WHEN 'l' THEN 'linear' ELSE 'hold' END AS interpolation, r.start
        FROM edgeflow.readings r JOIN edgeflow.series s ON s.id = r.series;
    CREATE VIEW edgeflow.gaps AS
        SELECT stream, seq + 1 AS first_missing, next_seq - 1 AS last_missing, next_seq - seq - 1 AS missing
        FROM (SELECT stream, seq, lead(seq) OVER (PARTITION BY stream ORDER BY seq) AS next_seq
              FROM edgeflow.batches) b
        WHERE next_seq > seq + 1
        UNION ALL
        SELECT stream, 0, min(seq) - 1, min(seq) FROM edgeflow.batches GROUP BY stream HAVING min(seq) > 0;
    CREATE FUNCTION edgeflow.value_at(p_device text, p_resource text, p_at bigint)
    RETURNS double precision LANGUAGE sql STABLE AS $$
        WITH s AS (SELECT id FROM edgeflow.series WHERE device = p_device AND resource = p_resource),
        a AS (SELECT origin, value, interp FROM edgeflow.readings
              WHERE series IN (SELECT id FROM s) AND origin <= p_at AND value <> 'NaN'
              ORDER BY origin DESC LIMIT 1),
        b AS (SELECT origin, value FROM edgeflow.readings
              WHERE series IN (SELECT id FROM s) AND origin > p_at AND value <> 'NaN'
              ORDER BY origin LIMIT 1)
        SELECT CASE WHEN a.origin = p_at OR a.interp <> 'l' THEN a.value
                    WHEN b.origin IS NULL THEN NULL
                    ELSE a.value + (b.value - a.value) * (p_at - a.origin)::float8 / (b.origin - a.origin)
               END
        FROM a LEFT JOIN b ON true
    $$;
    """,
    # 2: the compact encoding's series tables, shared by the receivers of a group
    """
    CREATE TABLE edgeflow.series_tables (
        hash      bytea PRIMARY KEY,
        body      bytea NOT NULL,
        stored_at timestamptz NOT NULL DEFAULT now()
    );
    """,
]
SCHEMA_VERSION: Final = len(_MIGRATIONS)


def check_dsn(dsn: str) -> dict[str, str]:
    """The libpq parameters of ``dsn`` (a ``postgresql://`` URL or ``key=value`` string). A password in
    it is refused: it would show in process lists and shell history (use ``PGPASSWORD``, a password
    file or ``~/.pgpass``). TLS and every other libpq option pass through as libpq has them
    (``?sslmode=verify-full&sslrootcert=...``, or ``PGSSLMODE`` and friends in the environment)."""
    try:
        params: dict[str, str] = {k: str(v) for k, v in conninfo_to_dict(dsn).items()}
    except psycopg.ProgrammingError as exc:
        raise SinkError(f"not a PostgreSQL connection string: {exc}") from None
    if "password" in params:
        raise SinkError(
            "the PostgreSQL URL carries a password; give it through PGPASSWORD, a password file or ~/.pgpass"
        )
    return params


class PostgresStore:
    """The PostgreSQL sink (see the module doc for the schema), and the read side.

    ``dsn``: a libpq URL or ``key=value`` string without a password; ``password`` / ``password_file``
    supply one (else libpq's own ``PGPASSWORD`` / ``PGPASSFILE`` / ``~/.pgpass``). ``receiver``: the
    name recorded with each batch stored. One connection, used by one thread at a time.
    """

    name = "postgresql"

    def __init__(
        self,
        dsn: str,
        *,
        password: str | None = None,
        password_file: Path | None = None,
        receiver: str = "",
        connect_timeout: float = 5.0,
    ) -> None:
        self._params = check_dsn(dsn)
        self._password = password
        self._password_file = password_file
        self.receiver = receiver
        self._connect_timeout = connect_timeout
        self._conn: psycopg.Connection[Any] | None = None
        self._series: dict[tuple[str, str, str], int] = {}
        self._streams: set[str] = set()
        self._lock = threading.Lock()
        #: Whether the readings table is a TimescaleDB hypertable (known after :meth:`open`).
        self.hypertable = False

    @property
    def where(self) -> str:
        p = self._params
        host = p.get("host") or p.get("hostaddr") or "local socket"
        return f"postgresql://{p.get('user', '')}@{host}:{p.get('port', '5432')}/{p.get('dbname', '')}"

    # -- connection -------------------------------------------------------------------------------

    def _connect(self) -> psycopg.Connection[Any]:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        kw: dict[str, Any] = dict(self._params)
        kw.setdefault("application_name", "edgeflow-receive")
        kw.setdefault("connect_timeout", str(max(1, round(self._connect_timeout))))
        if self._password is not None:
            kw["password"] = self._password
        elif self._password_file is not None:
            try:
                kw["password"] = self._password_file.read_text().strip()
            except OSError as exc:
                raise SinkError(f"cannot read the password file {self._password_file}: {exc}") from exc
        try:
            self._conn = psycopg.connect(autocommit=True, **kw)
        except psycopg.Error as exc:
            raise SinkError(f"cannot connect to {self.where}: {_one_line(exc)}") from exc
        return self._conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except psycopg.Error as exc:  # pragma: no cover - closing a broken connection
                log.debug("closing %s: %s", self.where, exc)

    def open(self) -> None:
        """Connect, create or migrate the schema (version :data:`SCHEMA_VERSION`)."""
        with self._lock:
            conn = self._connect()
            try:
                self._migrate(conn)
            except psycopg.Error as exc:
                self._drop()
                raise SinkError(f"creating the schema in {self.where} failed: {_one_line(exc)}") from exc
            except BaseException:
                self._drop()
                raise

    def _migrate(self, conn: psycopg.Connection[Any]) -> None:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('edgeflow.schema'))")
            conn.execute("CREATE SCHEMA IF NOT EXISTS edgeflow")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS edgeflow.schema_version ("
                " version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            row = conn.execute("SELECT coalesce(max(version), 0) FROM edgeflow.schema_version").fetchone()
            have = int(row[0]) if row else 0
            if have > SCHEMA_VERSION:
                raise SinkError(
                    f"{self.where} holds edgeflow schema version {have}; this edgeflow knows up to {SCHEMA_VERSION}"
                )
            for version in range(have + 1, SCHEMA_VERSION + 1):
                conn.execute(_MIGRATIONS[version - 1])
                if version == 1:
                    self._time_layout(conn)
                conn.execute("INSERT INTO edgeflow.schema_version (version) VALUES (%s)", (version,))
                log.info("%s: edgeflow schema at version %d", self.where, version)
            row = conn.execute(
                "SELECT count(*) FROM pg_extension e WHERE e.extname = 'timescaledb'"
                " AND to_regclass('edgeflow.readings') IS NOT NULL"
                " AND EXISTS (SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n"
                "  ON n.oid = c.relnamespace WHERE n.nspname = '_timescaledb_catalog')"
            ).fetchone()
            self.hypertable = bool(row and row[0]) and self._is_hypertable(conn)

    def _time_layout(self, conn: psycopg.Connection[Any]) -> None:
        """A hypertable when TimescaleDB can be had, else a BRIN index on origin."""
        available = conn.execute(
            "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
        ).fetchone()
        if available:
            try:
                with conn.transaction():  # a savepoint: the extension may be installed but not preloaded
                    conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
                    conn.execute(
                        "SELECT create_hypertable('edgeflow.readings', 'origin',"
                        f" chunk_time_interval => {_CHUNK_NS}::bigint)"
                    )
                log.info("%s: edgeflow.readings is a TimescaleDB hypertable", self.where)
                return
            except psycopg.Error as exc:
                log.warning("%s: TimescaleDB is installed but not usable (%s); plain table", self.where, exc)
        conn.execute("CREATE INDEX readings_origin_brin ON edgeflow.readings USING brin (origin)")

    @staticmethod
    def _is_hypertable(conn: psycopg.Connection[Any]) -> bool:
        try:
            with conn.transaction():
                row = conn.execute(
                    "SELECT count(*) FROM timescaledb_information.hypertables"
                    " WHERE hypertable_schema = 'edgeflow' AND hypertable_name = 'readings'"
                ).fetchone()
        except psycopg.Error:
            return False
        return bool(row and row[0])

    def close(self) -> None:
        with self._lock:
            self._drop()

    def __enter__(self) -> PostgresStore:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- storing ----------------------------------------------------------------------------------

    def store(self, items: Sequence[StoreItem]) -> list[bool]:
        with self._lock:
            try:
                conn = self._connect()
                self._ensure_series(conn, items)
                return self._store(conn, items)
            except psycopg.Error as exc:
                if isinstance(exc, psycopg.OperationalError) or conn_broken(self._conn):
                    self._drop()
                raise SinkError(
                    f"storing {len(items)} batches in {self.where} failed: {_one_line(exc)}",
                    permanent=isinstance(exc, psycopg.DataError),
                ) from exc

    def _ensure_series(self, conn: psycopg.Connection[Any], items: Sequence[StoreItem]) -> None:
        """Series and streams first seen here, in their own committed transaction: an id in the cache
        is always one the database has, whatever happens to the readings' transaction."""
        missing: dict[tuple[str, str, str], tuple[str, str, str]] = {}
        streams: set[str] = set()
        for batch, _topic in items:
            if batch.seq >= 0 and batch.stream_id not in self._streams:
                streams.add(batch.stream_id)
            for s in batch.series:
                key = (s.info.device, s.info.resource, s.info.value_type.value)
                if key not in self._series:
                    missing[key] = (s.info.profile, s.info.units, s.info.source)
        if not missing and not streams:
            return
        keys = sorted(missing)
        with conn.transaction():
            if streams:
                conn.execute(
                    "INSERT INTO edgeflow.streams (stream) SELECT unnest(%s::text[]) ORDER BY 1"
                    " ON CONFLICT DO NOTHING",
                    (sorted(streams),),
                )
            if keys:
                cols = list(zip(*[(*k, *missing[k]) for k in keys], strict=True))
                conn.execute(
                    "INSERT INTO edgeflow.series (device, resource, value_type, profile, units, source)"
                    " SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[])"
                    " ON CONFLICT DO NOTHING",
                    [list(c) for c in cols],
                )
                rows = conn.execute(
                    "SELECT s.id, s.device, s.resource, s.value_type FROM edgeflow.series s"
                    " JOIN unnest(%s::text[], %s::text[], %s::text[]) AS k(d, r, v)"
                    " ON s.device = k.d AND s.resource = k.r AND s.value_type = k.v",
                    [list(c) for c in cols[:3]],
                ).fetchall()
        self._streams.update(streams)
        for sid, device, resource, vt in rows if keys else []:
            self._series[(device, resource, vt)] = int(sid)

    def _store(self, conn: psycopg.Connection[Any], items: Sequence[StoreItem]) -> list[bool]:
        tracked = sorted(
            {(b.stream_id, b.seq): (b, t) for b, t in items if b.seq >= 0}.items()
        )  # one lock order for every receiver: no deadlocks between group members
        with conn.transaction():
            new: set[tuple[str, int]] = set()
            if tracked:
                cols: list[list[Any]] = [[], [], [], [], [], [], []]
                for (sid, seq), (b, topic) in tracked:
                    for c, v in zip(
                        cols, (sid, seq, b.readings, b.encoding, b.alarm, topic, self.receiver), strict=True
                    ):
                        c.append(v)
                rows = conn.execute(
                    "INSERT INTO edgeflow.batches (stream, seq, readings, encoding, alarm, topic, receiver)"
                    " SELECT * FROM unnest(%s::text[], %s::int8[], %s::int4[], %s::text[], %s::bool[],"
                    " %s::text[], %s::text[]) ON CONFLICT DO NOTHING RETURNING stream, seq",
                    cols,
                ).fetchall()
                new = {(str(s), int(q)) for s, q in rows}
            out: list[bool] = []
            parts: list[bytes] = [_COPY_HEADER]
            written: set[tuple[str, int]] = set()
            for b, _topic in items:
                key = (b.stream_id, b.seq)
                if b.seq >= 0 and (key not in new or key in written):
                    out.append(False)
                    continue
                if b.seq >= 0:
                    written.add(key)
                out.append(True)
                for s in b.series:
                    if len(s):
                        series_id = self._series[(s.info.device, s.info.resource, s.info.value_type.value)]
                        parts.append(_copy_rows(series_id, s))
            if len(parts) > 1:
                parts.append(_COPY_TRAILER)
                with (
                    conn.cursor() as cur,
                    cur.copy(
                        "COPY edgeflow.readings (series, origin, value, interp, start, value_obj)"
                        " FROM STDIN (FORMAT BINARY)"
                    ) as cp,
                ):
                    cp.write(b"".join(parts))
        return out

    # -- series tables (see edgeflow.cloud.receiver.TableSink) -------------------------------------

    def store_tables(self, tables: dict[bytes, bytes]) -> None:
        """Keep the compact encoding's series tables ``{hash: bytes}`` for every receiver of the group."""
        with self._lock:
            try:
                conn = self._connect()
                conn.execute(
                    "INSERT INTO edgeflow.series_tables (hash, body) SELECT * FROM unnest(%s::bytea[],"
                    " %s::bytea[]) ON CONFLICT DO NOTHING",
                    (list(tables), list(tables.values())),
                )
            except psycopg.Error as exc:
                if isinstance(exc, psycopg.OperationalError) or conn_broken(self._conn):
                    self._drop()
                raise SinkError(
                    f"storing {len(tables)} series tables in {self.where} failed: {_one_line(exc)}"
                ) from exc

    def load_tables(self, hashes: Sequence[bytes]) -> dict[bytes, bytes]:
        """The series tables of ``hashes`` some receiver has stored."""
        rows = self._query(
            "SELECT hash, body FROM edgeflow.series_tables WHERE hash = ANY(%s)", (list(hashes),)
        )
        return {bytes(h): bytes(b) for h, b in rows}

    # -- reading back -----------------------------------------------------------------------------

    def _query(self, query: str | sql.Composable, params: Sequence[Any] | dict[str, Any] = ()) -> list[Any]:
        with self._lock:
            conn = self._connect()
            try:
                return conn.execute(query, params).fetchall()  # type: ignore[arg-type]
            except psycopg.Error as exc:
                if isinstance(exc, psycopg.OperationalError):
                    self._drop()
                raise SinkError(f"query on {self.where} failed: {_one_line(exc)}") from exc

    def gaps(self, stream: str | None = None) -> list[tuple[str, int, int]]:
        """Missing sequence numbers per stream as ``(stream, first_missing, last_missing)``, from 0 to
        the highest sequence number stored (the ``edgeflow.gaps`` view)."""
        q = "SELECT stream, first_missing, last_missing FROM edgeflow.gaps"
        rows = (
            self._query(q + " WHERE stream = %s ORDER BY 1, 2", (stream,))
            if stream is not None
            else self._query(q + " ORDER BY 1, 2")
        )
        return [(str(s), int(a), int(b)) for s, a, b in rows]

    def streams(self) -> dict[str, dict[str, int]]:
        """Per stream: batches and readings stored, lowest and highest sequence number."""
        rows = self._query(
            "SELECT stream, count(*), coalesce(sum(readings), 0), min(seq), max(seq)"
            " FROM edgeflow.batches GROUP BY stream ORDER BY stream"
        )
        return {
            str(s): {"batches": int(n), "readings": int(r), "first_seq": int(lo), "last_seq": int(hi)}
            for s, n, r, lo, hi in rows
        }

    def count_readings(self) -> int:
        rows = self._query("SELECT count(*) FROM edgeflow.readings")
        return int(rows[0][0])

    def points(
        self, device: str, resource: str, *, since: int | None = None, until: int | None = None
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.str_]]:
        """The stored points of one series (every value type it had), by origin: ``(origins ns, values,
        interpolation per point: 'hold' or 'linear')``. ``since``/``until`` (ns, inclusive) narrow it,
        keeping the point before ``since`` and the one after ``until`` that reconstruction needs."""
        cond = ""
        params: dict[str, Any] = {"d": device, "r": resource, "lo": since, "hi": until}
        if since is not None:
            cond += (
                " AND r.origin >= coalesce((SELECT max(origin) FROM edgeflow.readings"
                " WHERE series IN (SELECT id FROM s) AND origin <= %(lo)s), %(lo)s)"
            )
        if until is not None:
            cond += (
                " AND r.origin <= coalesce((SELECT min(origin) FROM edgeflow.readings"
                " WHERE series IN (SELECT id FROM s) AND origin >= %(hi)s), %(hi)s)"
            )
        rows = self._query(
            "WITH s AS (SELECT id FROM edgeflow.series WHERE device = %(d)s AND resource = %(r)s)"
            " SELECT r.origin, coalesce(r.value, 'NaN'::float8), r.interp FROM edgeflow.readings r"
            " WHERE r.series IN (SELECT id FROM s)" + cond + " ORDER BY r.origin",
            params,
        )
        if not rows:
            return np.empty(0, np.int64), np.empty(0, np.float64), np.empty(0, np.str_)
        origins, values, interps = zip(*rows, strict=True)
        modes = np.where(np.array(interps) == "l", "linear", "hold")
        return np.asarray(origins, np.int64), np.asarray(values, np.float64), modes

    def series_at(self, device: str, resource: str, at: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """The value the cloud reconstructs for one series at each time in ``at`` (ns): between two
        stored points, linear or hold as the earlier point's stored interpolation says (what the edge's
        rule promised its bound for); NaN before the first point (and after the last, for linear)."""
        times = np.asarray(at, dtype=np.int64)
        if len(times) == 0:
            return np.empty(0, np.float64)
        t, v, modes = self.points(device, resource, since=int(times.min()), until=int(times.max()))
        if len(t) == 0:
            return np.full(len(times), np.nan)
        order = np.argsort(times, kind="stable")
        sorted_times = times[order]
        linear = reconstruct(t, v, sorted_times, "linear")
        hold = reconstruct(t, v, sorted_times, "hold")
        j = np.searchsorted(t, sorted_times, side="right") - 1
        use_linear = (j >= 0) & (modes[np.maximum(j, 0)] == "linear")
        out = np.empty(len(times))
        out[order] = np.where(use_linear, linear, hold)
        return out


def conn_broken(conn: psycopg.Connection[Any] | None) -> bool:
    return conn is not None and (conn.closed or conn.broken)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _copy_rows(series_id: int, s: DecodedSeries) -> bytes:
    """The binary COPY rows of one decoded series."""
    n = len(s)
    interp = b"l" if s.interpolation == "linear" else b"h"
    if s.objects is not None and any(o is not None for o in s.objects):
        return _copy_rows_objects(series_id, s, interp)
    rows = np.empty(n, dtype=_ROW_WINDOW if s.starts is not None else _ROW_PLAIN)
    rows["nf"] = _NCOLS
    rows["l_series"] = 4
    rows["series"] = series_id
    rows["l_origin"] = 8
    rows["origin"] = s.origins
    rows["l_value"] = 8
    rows["value"] = s.values
    rows["l_interp"] = 1
    rows["interp"] = interp
    if s.starts is not None:
        rows["l_start"] = 8
        rows["start"] = s.starts
    else:
        rows["l_start"] = -1
    rows["l_obj"] = -1
    return rows.tobytes()


def _copy_rows_objects(series_id: int, s: DecodedSeries, interp: bytes) -> bytes:
    """Rows of a series with non-numeric values (strings, arrays, binary): ``value_obj`` as jsonb."""
    out: list[bytes] = []
    head = struct.pack(">hii", _NCOLS, 4, series_id)
    objects: Iterable[Any] = s.objects if s.objects is not None else [None] * len(s)
    starts = s.starts.tolist() if s.starts is not None else None
    for i, (origin, value, obj) in enumerate(
        zip(s.origins.tolist(), s.values.tolist(), objects, strict=True)
    ):
        parts = [head, struct.pack(">iq", 8, origin)]
        parts.append(struct.pack(">i", -1) if obj is not None else struct.pack(">id", 8, value))
        parts.append(struct.pack(">i", 1) + interp)
        parts.append(struct.pack(">iq", 8, starts[i]) if starts is not None else struct.pack(">i", -1))
        if obj is None:
            parts.append(struct.pack(">i", -1))
        else:
            doc = b"\x01" + orjson.dumps(obj, default=jsonable)
            parts.append(struct.pack(">i", len(doc)) + doc)
        out.append(b"".join(parts))
    return b"".join(out)
