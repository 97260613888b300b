"""The engine, sessions and migrations of the job store."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from lookalike.errors import ConfigError, LookalikeError

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")
#: arbitrary constant for pg_advisory_lock: one migrator at a time across processes
_MIGRATE_LOCK = 7_311_402


class DatabaseUnavailable(LookalikeError):
    """The job store cannot be reached right now; retrying later may help."""

    code = "database_unavailable"
    http_status = 503


class Database:
    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        try:
            parsed = make_url(url)
        except Exception:  # noqa: BLE001 - sqlalchemy raises ArgumentError and others
            raise ConfigError(f"LOOKALIKE_DATABASE_URL is not a database URL: {url!r}") from None
        self.url = url
        self.dialect = parsed.get_backend_name()
        if self.dialect == "postgresql" and parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")  # psycopg 3 is the pinned driver
        kwargs: dict = {"pool_pre_ping": True}
        if self.dialect == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        else:
            kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_recycle=1800)
        self.engine: Engine = create_engine(parsed, **kwargs)
        if self.dialect == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        # A status poll only reads: in autocommit it costs one round trip, not BEGIN + SELECT + COMMIT.
        self.read_sessions = sessionmaker(self.engine.execution_options(isolation_level="AUTOCOMMIT"),
                                          expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success; connection faults become DatabaseUnavailable."""
        try:
            with self.sessions() as session, session.begin():
                yield session
        except OperationalError as exc:
            raise DatabaseUnavailable(f"the job store is unavailable: {type(exc.orig).__name__}") from None

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reading only, outside a transaction (each statement sees the latest
        committed rows); connection faults become DatabaseUnavailable."""
        try:
            with self.read_sessions() as session:
                yield session
        except OperationalError as exc:
            raise DatabaseUnavailable(f"the job store is unavailable: {type(exc.orig).__name__}") from None

    def ping(self) -> None:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            raise DatabaseUnavailable(f"the job store is unavailable: {type(exc).__name__}") from None

    def migrate(self) -> None:
        """Bring the schema to the newest revision (Alembic; safe to run from many processes)."""
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
        try:
            with self.engine.begin() as conn:
                if self.dialect == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATE_LOCK})
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
        except OperationalError as exc:
            raise DatabaseUnavailable(
                f"cannot reach the job store to migrate it: {exc.orig}") from None

    def dispose(self) -> None:
        self.engine.dispose()


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def open_database(url: str, *, migrate: bool = False) -> Database:
    db = Database(url)
    if migrate:
        db.migrate()
    return db
