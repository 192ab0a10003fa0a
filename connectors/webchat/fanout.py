"""Reaching a web visitor from any rasa replica.

A visitor's socket.io connection or event stream lives in one server process;
the message for them may be produced by another (a webhook that landed on
another replica, an agent on the desk, a journey). Two parts make that work:

* ``JsonRedisManager``: python-socketio's own Redis client manager, so an
  ``emit`` to a visitor's room reaches the process holding the socket. It
  speaks JSON on the wire instead of the library's pickle, so whoever can
  publish on Redis cannot run code in the server.
* ``Presence``: which replicas hold a live connection of a visitor (a hash
  per visitor, a heartbeat key per replica), so a sender knows whether to
  deliver live or keep the message in the outbox; and a pub/sub channel that
  carries messages for event streams to the replica holding them.

Keys: ``{p}:webchat:presence:{visitor}``, ``{p}:webchat:replica:{replica}``
and the pub/sub channels ``{p}:webchat:streams`` and ``{p}:webchat:socketio``.
"""
from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import Any, Callable, Dict, List, Optional

from socketio import AsyncRedisManager

from threadline.keys import Keys

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 10
REPLICA_TTL_SECONDS = 30
PRESENCE_TTL_SECONDS = 24 * 3600
SOCKET = "socket"
STREAM = "stream"


class JsonRedisManager(AsyncRedisManager):
    """``AsyncRedisManager`` with JSON messages (never pickle) on a prefixed channel.

    Publishing holds one connection (``single_connection_client``): redis-py's
    asyncio pool checks a connection each time it lends it with a read under a
    zero timeout, a task cancellation per command, which the load test's
    profile put at up to 0.9% of a replica's CPU for socket.io's publishes.
    """

    def __init__(self, url: str, channel: str, redis_options: Optional[Dict[str, Any]] = None, **kwargs: Any) -> None:
        options = {"single_connection_client": True, **(redis_options or {})}
        super().__init__(url, channel=channel, redis_options=options, **kwargs)

    async def _publish(self, data: Dict[str, Any]) -> Any:
        payload = json.dumps(data)
        try:
            return await self.redis.publish(self.channel, payload)
        except Exception:  # one reconnect, as the library does, then give up loudly
            logger.warning("socket.io: publish to Redis failed; reconnecting once")
            self._redis_connect()
            return await self.redis.publish(self.channel, payload)

    async def _listen(self):
        async for raw in super()._listen():
            try:
                message = json.loads(raw)
            except (TypeError, ValueError):
                logger.warning("socket.io: a non-JSON message on %s was ignored", self.channel)
                continue
            if isinstance(message, dict):
                yield message


class Presence:
    """Who holds a visitor's live connections, across replicas; and stream fan-out."""

    def __init__(self, redis: Callable[[], Any], keys: Optional[Keys] = None) -> None:
        self.replica = uuid.uuid4().hex[:12]
        self._redis = redis
        self.keys = keys or Keys()

    # ------------------------------------------------------------- registry

    def joined(self, visitor_id: str, kind: str) -> None:
        """One more live connection of ``kind`` (socket/stream) on this replica (blocking)."""
        key = self.keys.web_presence(visitor_id)
        pipe = self._redis().pipeline(transaction=True)
        pipe.hincrby(key, f"{self.replica}:{kind}", 1)
        pipe.expire(key, PRESENCE_TTL_SECONDS)
        pipe.set(self.keys.web_replica(self.replica), "1", ex=REPLICA_TTL_SECONDS)
        pipe.execute()

    def left(self, visitor_id: str, kind: str) -> None:
        """One live connection fewer (blocking)."""
        key, field = self.keys.web_presence(visitor_id), f"{self.replica}:{kind}"
        redis = self._redis()
        if redis.hincrby(key, field, -1) <= 0:
            redis.hdel(key, field)

    def connected(self, visitor_id: str, kind: str) -> bool:
        """Whether any live replica holds a connection of ``kind`` for the visitor (blocking)."""
        redis = self._redis()
        holders = [field.decode() if isinstance(field, bytes) else field
                   for field, count in redis.hgetall(self.keys.web_presence(visitor_id)).items() if int(count) > 0]
        replicas = {field.rsplit(":", 1)[0] for field in holders if field.endswith(f":{kind}")}
        if not replicas:
            return False
        if self.replica in replicas:
            return True
        pipe = redis.pipeline(transaction=False)
        for replica in replicas:
            pipe.exists(self.keys.web_replica(replica))
        return any(pipe.execute())  # a replica that died stops counting when its heartbeat expires

    def heartbeat(self) -> None:
        """This replica is alive (blocking; every ``HEARTBEAT_SECONDS``)."""
        self._redis().set(self.keys.web_replica(self.replica), "1", ex=REPLICA_TTL_SECONDS)

    def forget_replica(self) -> None:
        """This replica is stopping: its connections end with it (blocking)."""
        self._redis().delete(self.keys.web_replica(self.replica))

    # ------------------------------------------------------------ streams

    def publish_stream(self, visitor_id: str, messages: List[Dict[str, Any]]) -> None:
        """Hand messages to the visitor's event streams on the other replicas (blocking)."""
        self._redis().publish(self.keys.web_streams_channel(),
                              json.dumps({"from": self.replica, "visitor": visitor_id, "messages": messages}))

    async def listen_streams(self, url: str, deliver: Callable[[str, List[Dict[str, Any]]], None]) -> None:
        """Deliver other replicas' stream messages to this replica's streams, until cancelled."""
        from redis import asyncio as aioredis

        pause = 1.0
        while True:
            client = aioredis.Redis.from_url(url)
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.keys.web_streams_channel())
                pause = 1.0
                async for message in pubsub.listen():
                    try:
                        data = json.loads(message["data"])
                    except (TypeError, ValueError, KeyError):
                        continue
                    if isinstance(data, dict) and data.get("from") != self.replica and data.get("visitor"):
                        deliver(str(data["visitor"]), list(data.get("messages") or []))
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("webchat: stream fan-out lost its Redis connection; retrying in %.0f s", pause)
                await asyncio.sleep(pause)
                pause = min(30.0, pause * 2)
            finally:
                try:
                    await pubsub.close()
                    await client.close()
                except Exception:
                    pass

    async def keep_alive(self) -> None:
        """Refresh this replica's heartbeat until cancelled."""
        while True:
            try:
                await asyncio.to_thread(self.heartbeat)
            except Exception:
                logger.warning("webchat: presence heartbeat failed; retrying")
            await asyncio.sleep(HEARTBEAT_SECONDS)
