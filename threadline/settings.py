"""Configuration, read from the environment in one place.

Everything is a function of ``os.environ`` at call time (not import time), so
tests and the stack launcher can change the environment before use.
"""
import os
from pathlib import Path
from typing import Optional

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def var_dir() -> Path:
    """Directory for local state: embedded Redis data, SQLite file, logs."""
    path = Path(os.environ.get("THREADLINE_VAR_DIR", PROJECT_ROOT / "var"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def redis_url_from_env() -> Optional[str]:
    """The operator's Redis (``REDIS_URL``), or None for the embedded server."""
    return os.environ.get("REDIS_URL") or None


def database_url() -> str:
    """SQLAlchemy URL of the business database (SQLite under var/ by default)."""
    url = os.environ.get("DATABASE_URL")
    if url:
        # Heroku-style URLs still say postgres://, which SQLAlchemy 1.4 rejects.
        if url.startswith("postgres://"):
            url = "postgresql://" + url[len("postgres://"):]
        return url
    return f"sqlite:///{var_dir() / 'threadline.db'}"


def env(name: str, default: Optional[str] = None) -> Optional[str]:
    """A plain environment lookup, for settings with a default."""
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def require(name: str) -> str:
    """An environment variable that must be set; fails naming the variable."""
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(f"Missing required setting: environment variable {name} is not set.")
    return value


# Public defaults of optional settings; the stack exports them when unset so
# credentials.yml's ${VAR} references always resolve.
DEFAULTS = {
    "WHATSAPP_API_BASE": "https://graph.facebook.com/v21.0",
    "TELEGRAM_API_BASE": "https://api.telegram.org",
}
