"""The feedback rows in PostgreSQL (DATABASE_URL): the same rows, numbers and answers as
prod_data.csv, for API replicas on several machines that share no file system.

- One table, `ctloop_prod_data`: a row's number and its line, exactly as prod_data.csv would hold
  it (`ctloop export prod-data` writes the file back byte for byte, header first).
- One transaction per row. Its number comes from a one-row counter updated in the same
  transaction (`ctloop_counters`), so numbers are gapless and handed out once: a transaction that
  fails gives its number back. The caller is told the row is saved only after the commit, which
  PostgreSQL returns once the row is in its write-ahead log on disk (synchronous_commit, the
  server's default).
- Rows are checked before they are written, so no reader ever skips one (skipped_lines is 0).
- Reads are by row number through the primary key: `read_rows`, `tail` and the count cost what
  they return, whatever the history.
- One trainer at a time: `TrainerLock`, a session advisory lock (pg_try_advisory_lock), which
  PostgreSQL releases when the holder's connection ends, a dead trainer included.
- The retrain ledger: `PostgresJournal`, the same lines and rotation as retrains.jsonl
  (ctloop.journal), for ctloop.retrain_log.

The connection is opened on first use and again after a failure; a failure is reported like the
file's (`ProductionDataError`, `problem`), and the next call tries again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctloop.feedback import ProductionDataError, ProductionRow
from ctloop.tables import Table, check_line, empty_table, format_row, parse_table, prod_header

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger("ctloop.prod_db")

TRAINER_LOCK_KEY = 0x6374_6C6F_6F70  # "ctloop": the advisory lock of the single trainer
SCHEMA = """
CREATE TABLE IF NOT EXISTS ctloop_counters (name text PRIMARY KEY, value bigint NOT NULL);
INSERT INTO ctloop_counters (name, value) VALUES ('prod_data', 0) ON CONFLICT (name) DO NOTHING;
CREATE TABLE IF NOT EXISTS ctloop_prod_data (
    row_number bigint PRIMARY KEY,
    line text NOT NULL,
    n_components integer NOT NULL,
    saved_at timestamptz NOT NULL DEFAULT now()
);
"""
APPEND = """
WITH next AS (
    UPDATE ctloop_counters SET value = value + 1 WHERE name = 'prod_data' RETURNING value
)
INSERT INTO ctloop_prod_data (row_number, line, n_components)
SELECT value, %s, %s FROM next RETURNING row_number
"""
READ_CHUNK = 10_000  # rows fetched at once by the export
NEWEST = 2**62  # no row number is larger: "up to the newest"


def _connect(url: str) -> psycopg.Connection:
    import psycopg  # only when the store is PostgreSQL: the file store needs no driver

    return psycopg.connect(url, connect_timeout=10)


class _Session:
    """One connection to `url`, opened on first use (creating `schema`'s tables), and again
    after a failure; each block one transaction, committed at its end, one block at a time
    (re-entrant: a block may read through the same session)."""

    def __init__(self, url: str, schema: str) -> None:
        self.url = url
        self.schema = schema
        self._connection: psycopg.Connection | None = None
        self._lock = threading.RLock()

    @contextlib.contextmanager
    def cursor(self) -> Iterator[Any]:
        """A cursor in a transaction; psycopg.Error propagates, the connection dropped first."""
        import psycopg

        with self._lock:
            try:
                if self._connection is None or self._connection.closed:
                    self._connection = _connect(self.url)
                    self._connection.autocommit = True  # each block its own transaction
                    with self._connection.transaction():
                        self._connection.execute(self.schema)
                with self._connection.transaction(), self._connection.cursor() as cursor:
                    yield cursor
            except psycopg.Error:
                if self._connection is not None:
                    with contextlib.suppress(Exception):
                        self._connection.close()
                self._connection = None
                raise


class PostgresProductionData:
    """The feedback rows of an embedding of `n_components` columns, in PostgreSQL."""

    def __init__(self, url: str, n_components: int) -> None:
        self._session = _Session(url, SCHEMA)
        self.n_components = n_components
        self.header = prod_header(n_components)
        self.skipped_lines = 0  # rows are checked before they are written
        self.problem: str | None = None

    @property
    def url(self) -> str:
        return self._session.url

    @url.setter
    def url(self, url: str) -> None:
        self._session.url = url

    # -- writing ---------------------------------------------------------------------------------

    def append(self, row: ProductionRow) -> int:
        """Write one row in its own transaction; its number once committed."""
        line = row.to_line()
        if line.count(b"\n") != 1:
            raise ValueError("a row must be exactly one line")
        check_line(line, len(self.header), self.n_components)
        with self._cursor() as cursor:
            cursor.execute(APPEND, (line.decode("utf-8").rstrip("\r\n"), self.n_components))
            number = cursor.fetchone()
        if number is None:  # the counter row is missing: the schema was tampered with
            raise self._fault("the row counter is missing (ctloop_counters)")
        return int(number[0])

    def repair(self) -> None:
        """Create the tables if needed and check that the stored rows match this embedding."""
        with self._cursor() as cursor:
            cursor.execute(
                "SELECT n_components FROM ctloop_prod_data ORDER BY row_number DESC LIMIT 1"
            )
            found = cursor.fetchone()
        if found is not None and int(found[0]) != self.n_components:
            raise self._fault(
                f"its rows have {found[0]} embedding columns, the embedding has "
                f"{self.n_components}: the database holds another model's feedback"
            )

    # -- reading ---------------------------------------------------------------------------------

    def rows(self) -> int:
        return self.count_rows_on_disk()

    def count_rows_on_disk(self) -> int:
        """Rows saved (committed) so far."""
        with self._cursor() as cursor:
            cursor.execute("SELECT value FROM ctloop_counters WHERE name = 'prod_data'")
            found = cursor.fetchone()
        return int(found[0]) if found else 0

    def read_rows(self, first: int = 1, last: int | None = None) -> Table:
        """Rows `first`..`last` (1-based, inclusive; `last` defaults to the newest)."""
        first = max(first, 1)
        with self._cursor() as cursor:
            cursor.execute(
                "SELECT row_number, line FROM ctloop_prod_data "
                "WHERE row_number BETWEEN %s AND %s ORDER BY row_number",
                (first, NEWEST if last is None else last),
            )
            found = cursor.fetchall()
        if not found:
            return empty_table(self.n_components, self.header[self.n_components :])
        return parse_table(
            [line.encode("utf-8") for _, line in found],
            self.url_for_messages,
            self.n_components,
            header=self.header,
            first_row=int(found[0][0]),
        )

    def tail(self, count: int) -> Table:
        total = self.count_rows_on_disk()
        return self.read_rows(max(total - count + 1, 1), total)

    def lines(self) -> Iterator[bytes]:
        """The header line, then every row's line in order (for the export), in chunks."""
        yield format_row(self.header)
        after = 0
        while True:
            with self._cursor() as cursor:
                cursor.execute(
                    "SELECT row_number, line FROM ctloop_prod_data WHERE row_number > %s "
                    "ORDER BY row_number LIMIT %s",
                    (after, READ_CHUNK),
                )
                found = cursor.fetchall()
            if not found:
                return
            for _, line in found:
                yield line.encode("utf-8") + b"\n"
            after = int(found[-1][0])

    def signature(self) -> tuple[str, int]:
        """What identifies the rows now, without reading them (the dashboard's change check)."""
        return ("postgresql", self.count_rows_on_disk())

    @property
    def url_for_messages(self) -> str:
        """The URL without its password."""
        return redact(self.url)

    # -- internals -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _cursor(self) -> Iterator[Any]:
        """A cursor in a transaction committed at the end of the block; a failure is reported
        as ProductionDataError (the next call connects again)."""
        import psycopg

        try:
            with self._session.cursor() as cursor:
                yield cursor
        except psycopg.Error as exc:
            raise self._fault(f"{type(exc).__name__}: {str(exc).strip()}") from exc
        self.problem = None

    def _fault(self, reason: str) -> ProductionDataError:
        self.problem = f"{self.url_for_messages}: {reason}"
        log.error("the feedback store refuses appends: %s", self.problem)
        return ProductionDataError(self.problem)


class TrainerLock:
    """The single-trainer lock in PostgreSQL, with FileLock's acquire(timeout=0) and release():
    a session advisory lock held on its own connection for the trainer's lifetime."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._connection: psycopg.Connection | None = None

    def acquire(self, timeout: float = 0) -> None:
        """Take the lock now or raise filelock.Timeout (the file lock's signal) if it is held."""
        from filelock import Timeout

        connection = _connect(self.url)
        connection.autocommit = True
        found = connection.execute("SELECT pg_try_advisory_lock(%s)", (TRAINER_LOCK_KEY,))
        taken = found.fetchone()
        if not (taken and taken[0]):
            connection.close()
            raise Timeout(f"{redact(self.url)} advisory lock {TRAINER_LOCK_KEY}")
        self._connection = connection

    def release(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.execute("SELECT pg_advisory_unlock(%s)", (TRAINER_LOCK_KEY,))
            with contextlib.suppress(Exception):
                self._connection.close()
            self._connection = None

    @property
    def is_locked(self) -> bool:
        return self._connection is not None and not self._connection.closed


def redact(url: str) -> str:
    """A PostgreSQL URL without the password it may hold."""
    scheme, separator, rest = url.partition("://")
    if not separator or "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


LEDGER_LOCK_KEY = 0x6374_6C6F_6F71  # the retrain ledger's appends and rotations, one at a time
LEDGER_SCHEMA = """
CREATE TABLE IF NOT EXISTS ctloop_retrain_log (
    id bigserial PRIMARY KEY,
    entry text NOT NULL,
    is_carry boolean NOT NULL DEFAULT false,
    saved_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS ctloop_retrain_log_carries ON ctloop_retrain_log (id) WHERE is_carry;
"""
LATEST_CARRY = "SELECT coalesce(max(id), 0) FROM ctloop_retrain_log WHERE is_carry"
ROTATE_ROWS = 4000  # lines since the last carry at which an append rotates (about 1 MiB)
KEEP_ROTATIONS = 3  # rotations' worth of older lines kept, as the file keeps 3 archives


class PostgresJournal:
    """The retrain ledger's lines in PostgreSQL, with ctloop.journal.Journal's interface: the
    same carry lines and rotation, so RetrainLog's answers are the same from either store.

    An append is one transaction under an advisory lock: when ROTATE_ROWS lines follow the last
    carry, it first adds a carry line (RetrainLog's state, read inside the same transaction) and
    deletes the lines before the KEEP_ROTATIONS-th newest carry. Every read starts at the newest
    carry line: at most ROTATE_ROWS lines, whatever the history. Lines are stored as the file
    holds them (JSON text, NaN included)."""

    def __init__(
        self, url: str, rotate_rows: int = ROTATE_ROWS, keep_rotations: int = KEEP_ROTATIONS
    ) -> None:
        self.url = url
        self.rotate_rows = rotate_rows
        self.keep_rotations = keep_rotations
        # Re-entered: an append reads, in its own transaction, the state it carries.
        self._session = _Session(url, LEDGER_SCHEMA)
        self._last: int | None = None  # the newest id this reader has seen

    @contextlib.contextmanager
    def _cursor(self) -> Iterator[Any]:
        """A cursor in a transaction; a failure is an OSError, as the file's would be."""
        import psycopg

        try:
            with self._session.cursor() as cursor:
                yield cursor
        except psycopg.Error as exc:
            raise OSError(f"{redact(self.url)}: {type(exc).__name__}: {exc}") from exc

    def _entries(self, cursor: Any, after: int) -> tuple[list[dict], int]:
        cursor.execute(
            "SELECT id, entry FROM ctloop_retrain_log WHERE id > %s ORDER BY id", (after,)
        )
        found = cursor.fetchall()
        entries = []
        for _, text in found:
            try:
                entry = json.loads(text)
            except ValueError:
                continue
            if isinstance(entry, dict):
                entries.append(entry)
        return entries, (int(found[-1][0]) if found else after)

    def read_all(self) -> list[dict]:
        """The newest carry line and every line after it."""
        with self._cursor() as cursor:
            cursor.execute(LATEST_CARRY)
            carry = int(cursor.fetchone()[0])
            return self._entries(cursor, carry - 1 if carry else 0)[0]

    def read_new(self) -> tuple[list[dict], bool]:
        """The lines since the last call, and whether to start again from them (the first call,
        and after a rotation: the lines then start at the newest carry)."""
        with self._cursor() as cursor:
            cursor.execute(LATEST_CARRY)
            carry = int(cursor.fetchone()[0])
            restart = self._last is None or self._last < carry
            after = (carry - 1 if carry else 0) if restart else (self._last or 0)
            entries, self._last = self._entries(cursor, after)
            return entries, restart

    def archives(self) -> list[Path]:
        return []  # older lines are rows of the table, not files

    def append(self, entry: dict, carry: Callable[[], dict]) -> None:
        """One line in its own transaction, after a rotation when one is due; OSError when the
        database cannot take it."""
        from ctloop.journal import CARRY
        from ctloop.util import utc_iso

        with self._cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", (LEDGER_LOCK_KEY,))
            cursor.execute(LATEST_CARRY)
            latest = int(cursor.fetchone()[0])
            cursor.execute("SELECT count(*) FROM ctloop_retrain_log WHERE id > %s", (latest,))
            if int(cursor.fetchone()[0]) >= self.rotate_rows:
                state = {"event": CARRY, "at": utc_iso(), **carry()}
                cursor.execute(
                    "INSERT INTO ctloop_retrain_log (entry, is_carry) VALUES (%s, true)",
                    (json.dumps(state, separators=(",", ":")),),
                )
                cursor.execute(
                    "DELETE FROM ctloop_retrain_log WHERE id < ("
                    "SELECT coalesce(min(id), 0) FROM (SELECT id FROM ctloop_retrain_log "
                    "WHERE is_carry ORDER BY id DESC LIMIT %s) AS kept)",
                    (self.keep_rotations,),
                )
            cursor.execute(
                "INSERT INTO ctloop_retrain_log (entry) VALUES (%s)",
                (json.dumps(entry, separators=(",", ":")),),
            )
