"""Connecting to the archive database and migrating it with Alembic."""

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import SQLAlchemyError

from archive.functions import DecimalSum

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def archive_url(url: str | URL) -> URL:
    """The URL with a driver we ship: `postgresql://` means psycopg 3."""
    parsed = make_url(url)
    if parsed.drivername in ("postgres", "postgresql"):
        return parsed.set(drivername="postgresql+psycopg")
    return parsed


def create_archive_engine(url: str | URL) -> Engine:
    """An engine whose errors never list a statement's parameters (the customer's contact)."""
    parsed = archive_url(url)
    if parsed.get_backend_name() == "postgresql":
        # Bounded well under the activities' 30 s: a hung database never holds a thread.
        engine = create_engine(
            parsed,
            hide_parameters=True,
            pool_pre_ping=True,
            pool_timeout=10,
            connect_args={
                "connect_timeout": 5,
                "options": "-c statement_timeout=20000 -c lock_timeout=10000",
            },
        )
    else:
        # A SQLite file has no connection to lose.
        engine = create_engine(parsed, hide_parameters=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_connect(connection: Any, _record: Any) -> None:
    # WAL lets the command read while the worker writes; wait for locks instead of failing.
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # As the local Temporal server runs: a crash of the process loses nothing, only a power
    # loss can cost the last commits (PostgreSQL is the archive for production).
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
    connection.create_aggregate("decimal_sum", 1, DecimalSum)  # exact money sums
    # Let SQLAlchemy issue BEGIN itself (pysqlite's own defers it past the first read).
    connection.isolation_level = None


def _sqlite_begin(connection: Any) -> None:
    # Take the write lock up front: a read-then-write (and a migration) is atomic.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply the migrations up to `revision`, creating a SQLite file's folder if needed."""
    if engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
        Path(engine.url.database).parent.mkdir(parents=True, exist_ok=True)
    config = alembic_config(engine)
    try:
        command.upgrade(config, revision)
    except SQLAlchemyError:
        # Another worker or the command migrated at the same moment: fine if it is done.
        if revision != "head" or current_revision(engine) != head_revision(config):
            raise


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision(config: Config) -> str | None:
    return ScriptDirectory.from_config(config).get_current_head()


def downgrade(engine: Engine, revision: str) -> None:
    command.downgrade(alembic_config(engine), revision)
