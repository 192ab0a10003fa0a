"""Engine and sessions, created lazily from ``DATABASE_URL``; schema set-up is an explicit step.

``python -m threadline.db init [--demo]`` (what ``make run`` does before it
starts the servers) creates the tables, adds columns a newer version of the
models has, and with ``--demo`` tops up the demo data. Queries never create
anything: on a database that was never initialised they fail with a message
saying so.
"""
import contextlib
import logging
import threading
from typing import Dict, Iterator

from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.orm import Session, sessionmaker

from threadline import settings

logger = logging.getLogger(__name__)

_engines: Dict[str, Engine] = {}
_makers: Dict[str, sessionmaker] = {}
_lock = threading.Lock()


class SchemaMissing(RuntimeError):
    """The business database has no (or an old) schema."""


def get_engine() -> Engine:
    """The engine for the configured database (one per URL per process)."""
    url = settings.get().database_url
    engine = _engines.get(url)
    if engine is None:
        with _lock:
            engine = _engines.get(url)
            if engine is None:
                kwargs = {"future": True, "pool_pre_ping": True}
                if url.startswith("sqlite"):
                    kwargs["connect_args"] = {"check_same_thread": False, "timeout": 15}
                engine = create_engine(url, **kwargs)
                _engines[url] = engine
                _makers[url] = sessionmaker(bind=engine, future=True, expire_on_commit=False)
    return engine


def reset_engine() -> None:
    """Forget cached engines (tests switch DATABASE_URL between runs)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
        _makers.clear()


def _add_missing_columns(engine: Engine) -> None:
    """Add nullable columns the models have and an older database lacks."""
    from threadline.db import models

    inspector = inspect(engine)
    for table in models.Base.metadata.sorted_tables:
        if not inspector.has_table(table.name):
            continue
        present = {column["name"] for column in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in present:
                continue
            if not column.nullable:
                raise SchemaMissing(
                    f"table {table.name} lacks the required column {column.name}; migrate it by hand"
                )
            kind = column.type.compile(dialect=engine.dialect)
            with engine.begin() as conn:
                conn.exec_driver_sql(f'ALTER TABLE {table.name} ADD COLUMN {column.name} {kind}')
            logger.info("added column %s.%s", table.name, column.name)


def init_schema(demo: bool = False) -> None:
    """Create the schema (and add new columns); with ``demo``, top up the demo data."""
    from threadline.db import models, seed

    engine = get_engine()
    from threadline.analytics import views

    with _lock:
        models.Base.metadata.create_all(engine)
        _add_missing_columns(engine)
        views.create(engine)
    if demo:
        seed.seed(engine)


def ensure_ready(demo: bool = True) -> None:
    """``init_schema`` with the demo data (tests and the stack launcher)."""
    init_schema(demo=demo)


@contextlib.contextmanager
def session_scope() -> Iterator[Session]:
    """A transaction: committed on success, rolled back on any error."""
    get_engine()
    session = _makers[settings.get().database_url]()
    try:
        yield session
        session.commit()
    except (OperationalError, ProgrammingError) as exc:
        session.rollback()
        message = str(exc.orig) if getattr(exc, "orig", None) else str(exc)
        if "no such table" in message or "does not exist" in message and "relation" in message:
            raise SchemaMissing(
                "The business database has no schema yet: run `python -m threadline.db init --demo` "
                "(make run does it)."
            ) from exc
        raise
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
