"""Kept benchmark runs: every saved `toolkit bench` run (its records, environment and each model's sha256) in an
SQLite database. All SQL lives in this module, so a server database can replace SQLite behind the same class.

SQLite runs in WAL mode with a busy timeout, and each run is written in one IMMEDIATE transaction: several
processes can save into one history at once, and a run is either there whole or not at all.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

from .errors import UsageError
from .records import BenchRecord, Record, record_from_dict

SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 60_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created TEXT NOT NULL,
    label TEXT,
    command TEXT,
    host TEXT,
    toolkit TEXT,
    environment TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS records (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    model TEXT NOT NULL,
    model_name TEXT NOT NULL,
    model_sha256 TEXT,
    backend TEXT NOT NULL,
    target TEXT,
    status TEXT NOT NULL,
    batch INTEGER,
    scenario TEXT,
    p50_us REAL,
    p90_us REAL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS records_by_run ON records (run_id, position);
CREATE INDEX IF NOT EXISTS records_by_model ON records (model_name, backend, target);
CREATE INDEX IF NOT EXISTS runs_by_created ON runs (created);
"""


class HistoryError(UsageError):
    """A history that cannot be opened or read, or a run that is not in it."""


def default_path() -> Path:
    """$TOOLKIT_HISTORY, else $XDG_DATA_HOME/edge-toolkit/history.sqlite (~/.local/share/... without it)."""
    given = os.environ.get("TOOLKIT_HISTORY")
    if given:
        return Path(given).expanduser()
    data = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(data) / "edge-toolkit" / "history.sqlite"


@dataclass
class Run:
    """One saved run: its id, when (UTC, ISO 8601), what was typed, where, and its records in order."""

    run_id: int
    created: str
    label: str | None
    command: str | None
    host: str | None
    toolkit: str | None
    environment: dict[str, Any]
    records: list[Record] = field(default_factory=list)
    sha256: dict[str, str | None] = field(default_factory=dict)  # model path -> the file's sha256 when saved

    def ok(self) -> list[BenchRecord]:
        return [r for r in self.records if isinstance(r, BenchRecord)]

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "created": self.created, "label": self.label, "command": self.command,
                "host": self.host, "toolkit": self.toolkit, "environment": self.environment,
                "sha256": self.sha256, "records": [r.to_dict() for r in self.records]}


@dataclass
class Row:
    """One record of a run, as `toolkit history` lists it."""

    run_id: int
    created: str
    label: str | None
    model: str
    model_sha256: str | None
    backend: str
    target: str | None
    status: str
    batch: int | None
    scenario: str | None
    p50_us: float | None
    p90_us: float | None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class History:
    """A history database. Open it with `open_history`; close it (or use `with`)."""

    def __init__(self, path: Path, readonly: bool = False):
        self.path = path
        try:
            if readonly:
                self.db = self._connect_readonly(path)
                self._check_readable()
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                self.db = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
                self.db.execute("PRAGMA foreign_keys = ON")
                _retry_while_locked(lambda: self.db.execute("PRAGMA journal_mode = WAL"))
                _retry_while_locked(self._migrate)
        except sqlite3.DatabaseError as e:
            if not readonly and path.is_file() and not os.access(path.parent, os.W_OK | os.X_OK):
                raise HistoryError(f"the history '{path}' cannot be written: its folder is read-only ({e})",
                                   "Save to a history in a folder you can write to (--history FILE); reading it "
                                   "works as it is") from None
            raise HistoryError(f"'{path}' cannot be used as a benchmark history ({e})",
                               "Point --history or TOOLKIT_HISTORY at the file toolkit bench --save writes") from None
        except OSError as e:
            raise HistoryError(f"the history '{path}' cannot be created ({e.strerror})",
                               "Point --history or TOOLKIT_HISTORY at a file in a folder you can write to") from None

    @staticmethod
    def _connect_readonly(path: Path) -> sqlite3.Connection:
        """Reading needs no write access: read-only, else (a WAL database in a folder that cannot take its -shm
        file) as an immutable file."""
        from urllib.parse import quote

        uri = "file:" + quote(str(path.resolve()))
        try:
            db = sqlite3.connect(uri + "?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            return db
        except sqlite3.OperationalError:
            return sqlite3.connect(uri + "?immutable=1", uri=True, isolation_level=None)

    def _check_readable(self) -> None:
        tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not {"meta", "runs", "records"} <= tables:
            raise HistoryError(f"'{self.path}' is an SQLite file, but not a benchmark history",
                               "Point --history or TOOLKIT_HISTORY at the file toolkit bench --save writes")
        row = self.db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        if row and int(row[0]) > SCHEMA_VERSION:
            raise HistoryError(f"the history '{self.path}' was written by a newer toolkit (schema {row[0]})",
                               "Upgrade edge-toolkit to read it")

    def _migrate(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            for statement in filter(str.strip, _SCHEMA.split(";")):
                self.db.execute(statement)
            row = self.db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            if row is None:
                self.db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) > SCHEMA_VERSION:
                raise HistoryError(f"the history '{self.path}' was written by a newer toolkit (schema {row[0]})",
                                   "Upgrade edge-toolkit to read it")
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "History":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------ writing
    def save_run(self, records: Sequence[Record], command: str | None = None, label: str | None = None,
                 sha256: dict[str, str | None] | None = None) -> int:
        """Store one run (all its records, in order) in one transaction; its run id."""
        from . import __version__
        from .benchmark.protocol import environment

        sha256 = dict(sha256 or {})
        env = next((r.environment for r in records if isinstance(r, BenchRecord) and r.environment
                    and r.runner == "local"), None) or environment(None, __version__)
        try:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                cur = self.db.execute(
                    "INSERT INTO runs (created, label, command, host, toolkit, environment) VALUES (?, ?, ?, ?, ?, ?)",
                    (_now(), label, command, socket.gethostname(), __version__, json.dumps(env)))
                run_id = int(cur.lastrowid)
                self.db.executemany(
                    "INSERT INTO records (run_id, position, model, model_name, model_sha256, backend, target, status,"
                    " batch, scenario, p50_us, p90_us, record) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [_record_row(run_id, i, r, sha256.get(r.model)) for i, r in enumerate(records)])
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as e:
            err = HistoryError(f"the run could not be saved in '{self.path}' ({e})",
                               "Check the disk and the file's permissions; the results above are complete")
            err.exit_code = 1  # the measurement worked; keeping it failed
            raise err from None
        return run_id

    # ------------------------------------------------------------------------------------------ reading
    def run_ids(self) -> list[int]:
        return [r[0] for r in self.db.execute("SELECT id FROM runs ORDER BY id")]

    def resolve(self, ref: str | int) -> int:
        """A run id from what a user types: 12, latest, latest~1 (the one before the latest)."""
        text = str(ref).strip()
        m = re.fullmatch(r"latest(?:~(\d+))?", text)
        ids = self.run_ids()
        if m:
            back = int(m.group(1) or 0)
            if back >= len(ids):
                raise HistoryError(f"there is no run '{text}': the history '{self.path}' holds {len(ids)} run(s)",
                                   "Save runs with toolkit bench --save; list them with toolkit history")
            return ids[-1 - back]
        if not text.isdigit():
            raise HistoryError(f"'{text}' is not a run id (a number, latest or latest~N)",
                               "List the runs with toolkit history")
        if int(text) not in ids:
            span = f"runs {ids[0]} to {ids[-1]}" if ids else "no runs yet"
            raise HistoryError(f"there is no run {text} in '{self.path}' ({span})", "List the runs with toolkit history")
        return int(text)

    def run(self, ref: str | int) -> Run:
        run_id = self.resolve(ref)
        row = self.db.execute("SELECT id, created, label, command, host, toolkit, environment FROM runs WHERE id = ?",
                              (run_id,)).fetchone()
        run = Run(run_id=row[0], created=row[1], label=row[2], command=row[3], host=row[4], toolkit=row[5],
                  environment=json.loads(row[6]))
        for model, sha, text in self.db.execute(
                "SELECT model, model_sha256, record FROM records WHERE run_id = ? ORDER BY position", (run_id,)):
            run.records.append(record_from_dict(json.loads(text)))
            run.sha256[model] = sha
        return run

    def rows(self, model: str | None = None, backend: str | None = None, target: str | None = None,
             since: str | None = None, until: str | None = None, run_ids: Iterable[int] = (),
             limit: int | None = None) -> list[Row]:
        """Saved records, newest run first; `model` matches the file name or the path as given, `since`/`until`
        are ISO dates or times (UTC) and include their whole day."""
        where, args = [], []
        if model:
            where.append("(r.model_name = ? OR r.model = ?)")
            args += [model, model]
        if backend:
            where.append("r.backend = ?")
            args.append(backend)
        if target:
            where.append("COALESCE(r.target, 'host') = ?")
            args.append(target)
        # Compared at the precision given: a date includes its whole day, a time its whole second.
        if since:
            where.append("substr(u.created, 1, ?) >= ?")
            args += [len(since), since]
        if until:
            where.append("substr(u.created, 1, ?) <= ?")
            args += [len(until), until]
        ids = list(run_ids)
        if ids:
            where.append(f"u.id IN ({','.join('?' * len(ids))})")
            args += ids
        sql = ("SELECT u.id, u.created, u.label, r.model, r.model_sha256, r.backend, r.target, r.status, r.batch, "
               "r.scenario, r.p50_us, r.p90_us FROM records r JOIN runs u ON u.id = r.run_id"
               + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY u.id DESC, r.position")
        if limit:
            sql += " LIMIT ?"
            args.append(limit)
        return [Row(*row) for row in self.db.execute(sql, args)]


def _retry_while_locked(step, seconds: float = BUSY_TIMEOUT_MS / 1000) -> None:
    """Run `step` again while another process holds the lock it needs. Switching a new file to WAL takes an
    exclusive lock, and SQLite answers "database is locked" at once instead of waiting for it, so processes that
    open a new history together need this."""
    import time

    deadline = time.monotonic() + seconds
    while True:
        try:
            step()
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _record_row(run_id: int, position: int, record: Record, sha: str | None) -> tuple:
    d = record.to_dict()
    lat = d.get("latency_us") or {}
    return (run_id, position, record.model, Path(record.model).name, sha, record.backend, d.get("target"),
            record.status, d.get("batch"), d.get("scenario"), lat.get("p50"), lat.get("p90"), json.dumps(d))


def open_history(path: str | os.PathLike | None = None, readonly: bool = False) -> History:
    """The history at `path`, else at default_path(); created on first use (not when `readonly`)."""
    return History(Path(path).expanduser() if path else default_path(), readonly)


def model_hashes(records: Iterable[Record]) -> dict[str, str | None]:
    """Each measured model's sha256 now (None for a folder or a file that is gone), so a saved run names the exact
    bytes it measured."""
    from .artifact import sha256_file

    out: dict[str, str | None] = {}
    for r in records:
        if r.model in out:
            continue
        p = Path(r.model)
        try:
            out[r.model] = sha256_file(p) if p.is_file() else None
        except OSError:
            out[r.model] = None
    return out
