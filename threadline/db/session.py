"""Engine and sessions, created lazily from ``DATABASE_URL``."""
import contextlib
import threading
from typing import Dict, Iterator, Set

from sqlalchemy import create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from threadline import settings

_engines: Dict[str, Engine] = {}
_ready: Set[str] = set()
_lock = threading.Lock()


def get_engine() -> Engine:
    """The engine for the configured database (one per URL per process)."""
    url = settings.database_url()
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
    return engine


def reset_engine() -> None:
    """Forget cached engines (tests switch DATABASE_URL between runs)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
        _ready.clear()


def ensure_ready() -> None:
    """Create the schema and top up the demo data, once per process and database."""
    url = settings.database_url()
    if url in _ready:
        return
    from threadline.db import models, seed

    engine = get_engine()
    with _lock:
        if url in _ready:
            return
        models.Base.metadata.create_all(engine)
        seed.seed(engine)
        _ready.add(url)


@contextlib.contextmanager
def session_scope() -> Iterator[Session]:
    """A transaction: committed on success, rolled back on any error."""
    ensure_ready()
    session = sessionmaker(bind=get_engine(), future=True, expire_on_commit=False)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
