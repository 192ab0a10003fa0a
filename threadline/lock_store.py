"""Rasa's Redis lock store, connected through a URL.

Rasa builds a custom lock store as ``cls(endpoint_config=...)`` and its own
``RedisLockStore`` only takes host/port, so it cannot reach the embedded
server's unix socket. This subclass keeps every method of the parent and only
replaces the connection::

    lock_store:
      type: threadline.lock_store.RedisUrlLockStore
      url: ${REDIS_URL}        # optional: else REDIS_URL, else the embedded server
      key_prefix: threadline   # optional, alphanumeric (Rasa's rule); default THREADLINE_KEY_PREFIX
      socket_timeout: 10       # optional, seconds
"""
from __future__ import annotations

from typing import Any, Optional, Text

import redis

from rasa.core.lock_store import DEFAULT_SOCKET_TIMEOUT_IN_SECONDS, RedisLockStore
from rasa.utils.endpoints import EndpointConfig

from threadline import redis_client, settings


class RedisUrlLockStore(RedisLockStore):
    """``RedisLockStore`` whose connection comes from a Redis URL (``unix://`` too)."""

    def __init__(
        self,
        endpoint_config: Optional[EndpointConfig] = None,
        url: Optional[Text] = None,
        key_prefix: Optional[Text] = None,
        socket_timeout: Optional[float] = None,
        **_: Any,
    ) -> None:
        """Connect to ``url``, the endpoint's ``url``, ``REDIS_URL`` or the embedded server."""
        kwargs = dict(endpoint_config.kwargs) if endpoint_config else {}
        url = url or (endpoint_config.url if endpoint_config else None) or redis_client.redis_url()
        key_prefix = key_prefix or kwargs.get("key_prefix") or settings.get().key_prefix
        socket_timeout = float(
            socket_timeout or kwargs.get("socket_timeout") or DEFAULT_SOCKET_TIMEOUT_IN_SECONDS
        )
        # The parent's client is never connected (redis-py connects lazily);
        # it is replaced right away by one built from the URL.
        super().__init__(key_prefix=key_prefix, socket_timeout=socket_timeout)
        self.red = redis.Redis.from_url(url, socket_timeout=socket_timeout)
