"""The web chat's live transports: server-sent events for the REST widget, socket.io for Rasa's.

``LiveTransports`` is mixed into ``WebchatInput``: the event stream
(``GET /events?sender=<visitor token>``) replays the visitor's outbox and
then forwards what the bot sends on its own; socket.io speaks the Rasa
webchat protocol, its session id being the visitor token. Both demand the
token, and both hand messages to the same pipeline as REST.
"""
import asyncio
import inspect
import json
import logging
from typing import Any, Awaitable, Callable, Dict, Optional

from rasa.core.channels.channel import UserMessage
from rasa.core.channels.socketio import SocketBlueprint
from sanic import Blueprint
from sanic.request import Request
from sanic.response import HTTPResponse
from socketio import AsyncServer

from connectors import server
from threadline import redis_client
from connectors.base import BadPayload, Inbound, error_response, run_sync
from connectors.webchat.fanout import SOCKET, JsonRedisManager
from connectors.webchat.outputs import WebchatReplyCollector, WebchatSocketOutput
from connectors.webchat.visitors import (
    new_visitor,
    outbox_take,
    token_problem,
    visitor_from_token,
    visitor_room,
    visitor_token,
)

logger = logging.getLogger(__name__)

STREAM_PING_SECONDS = 20.0
TRANSPORT_SOCKET = "socketio"


class LiveTransports:
    """Event streams and socket.io sessions of ``WebchatInput`` (see the module docstring)."""

    async def stream_events(self, request: Request) -> Optional[HTTPResponse]:
        """Server-sent events for one visitor: waiting outbox messages first, then live ones."""
        token = request.args.get("sender")
        visitor = visitor_from_token(token)
        if visitor is None:
            return error_response(403, token_problem(token))
        limited = await self.check_source(server.client_address(request))
        if limited is not None:
            return limited
        queue = await run_sync(self.live.subscribe, visitor)
        try:
            stream = await request.respond(
                content_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
            await stream.send(": connected\n\n")
            for item in await run_sync(outbox_take, visitor, self.redis_client()):
                collector = WebchatReplyCollector(self.config, self.sender, visitor_id=visitor, redis=self._redis)
                await collector.send_response(item.get("customer_id", ""), dict(item.get("message") or {}))
                queue.put_nowait(collector.messages)
            while True:
                try:
                    messages = await asyncio.wait_for(queue.get(), STREAM_PING_SECONDS)
                except asyncio.TimeoutError:
                    await stream.send(": ping\n\n")
                    continue
                if messages is None:
                    break
                for message in messages:
                    await stream.send(f"event: bot\ndata: {json.dumps(message)}\n\n")
            await stream.eof()
        finally:
            await run_sync(self.live.unsubscribe, visitor, queue)
        return None

    # ---------------------------------------------------------------------- socket.io

    def _socket_blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        sio = AsyncServer(
            async_mode="sanic", cors_allowed_origins=list(self.cors_origins),
            max_http_buffer_size=self.max_body_bytes,
            client_manager=JsonRedisManager(redis_client.redis_url(), channel=self.keys.socketio_channel()),
        )
        self.live.sio = sio
        blueprint = SocketBlueprint(sio, self.config["socketio_path"], f"threadline_{self.name()}_socketio", __name__)

        @sio.on("connect")
        async def connect(sid: str, environ: Dict[str, Any], auth: Optional[Dict[str, Any]] = None) -> bool:
            await sio.save_session(sid, {"auth": auth if isinstance(auth, dict) else {},
                                         "source": environ.get("REMOTE_ADDR") or "unknown"})
            return True

        @sio.on("disconnect")
        async def disconnect(sid: str) -> None:
            session = await sio.get_session(sid)
            if session.get("visitor") and self.live.presence is not None:
                await run_sync(self.live.presence.left, session["visitor"], SOCKET)

        @sio.on("session_request")
        async def session_request(sid: str, data: Any) -> None:
            requested = data.get("session_id") if isinstance(data, dict) else None
            await self._start_session(sid, requested)

        @sio.on(self.config["user_message_evt"])
        async def user_uttered(sid: str, data: Any) -> Dict[str, Any]:
            # The return value is the socket.io acknowledgement, for clients that ask for one.
            return await self._socket_message(sid, data, on_new_message)

        return blueprint

    async def _start_session(self, sid: str, requested: Any) -> str:
        """Put the socket in its visitor's room, confirm the session, flush the outbox.

        The session id a client asks for must be a visitor token; anything
        else (someone's bare visitor id, a made-up one) starts a new visitor.
        """
        sio = self.live.sio
        visitor = visitor_from_token(requested)
        if visitor is None:
            if requested:
                logger.info("webchat: a socket asked for a session without a valid visitor token; new visitor")
            visitor = new_visitor()["visitor"]
        session = await sio.get_session(sid)
        previous = session.get("visitor")
        if previous and previous != visitor:
            await _maybe_await(sio.leave_room(sid, visitor_room(previous)))
            if self.live.presence is not None:
                await run_sync(self.live.presence.left, previous, SOCKET)
        await _maybe_await(sio.enter_room(sid, visitor_room(visitor)))
        if previous != visitor and self.live.presence is not None:
            await run_sync(self.live.presence.joined, visitor, SOCKET)
        session["visitor"] = visitor
        await sio.save_session(sid, session)
        await sio.emit("session_confirm", visitor_token(visitor), room=sid)
        for item in await run_sync(outbox_take, visitor, self.redis_client()):
            output = WebchatSocketOutput(self.config, self.sender, self.live, visitor_id=visitor, redis=self._redis)
            await output.send_response(item.get("customer_id", ""), dict(item.get("message") or {}))
        return visitor

    async def _socket_message(
        self, sid: str, data: Any, on_new_message: Callable[[UserMessage], Awaitable[Any]]
    ) -> Dict[str, Any]:
        """Run one ``user_uttered`` event through the base pipeline; returns its acknowledgement.

        The acknowledgement is the socket's answer to the webhook's status:
        ``{"status": "processed"}`` (or ``duplicate``...) once the message is
        stored, else ``{"error": ..., "retry": true}`` and the same ``error``
        event, so the client sends it again with the same ``message_id``. A
        turn that failed after its replies went out (its tracker could not be
        saved) is not stored, so it must be sent again, as a platform would
        on a non-200; the replies may then arrive twice, never the message.
        """
        sio = self.live.sio

        async def refuse(message: str, retry: bool = False, **extra: Any) -> Dict[str, Any]:
            answer = {"error": message, **({"retry": True} if retry else {}), **extra}
            await sio.emit("error", answer, room=sid)
            return answer

        if not isinstance(data, dict):
            return await refuse("a message must be a JSON object")
        session = await sio.get_session(sid)
        # The socket's confirmed session wins over a session_id in the message.
        visitor = session.get("visitor") or await self._start_session(sid, data.get("session_id"))
        inbound = Inbound(app=self._app, source=session.get("source") or "unknown", transport="socketio")
        try:
            envelope = self.envelope_from(data, TRANSPORT_SOCKET, visitor_id=visitor, signed=session.get("auth"))
        except BadPayload as exc:
            return await refuse(str(exc))
        limited = await run_sync(self.source_budget.hit, self.redis_client(), self.keys, inbound.source)
        if not limited.allowed:
            return await refuse("too many messages; retry later", True, retry_after=limited.retry_after)
        from connectors.webchat.channel import WebDelivery

        delivery = WebDelivery(inbound, [envelope], TRANSPORT_SOCKET)
        try:
            await self.process(delivery, on_new_message)
        except Exception:
            logger.exception("webchat: socket.io message %s failed", envelope.message_id)
            return await refuse("temporarily unavailable; send it again", True)
        resend = self.must_resend(delivery)
        if resend is not None and resend[0] == "limited":
            return await refuse("too many messages from this sender; retry later", True, retry_after=resend[1])
        if resend is not None:
            return await refuse("temporarily unavailable; send it again", True)
        sent_id = data.get("message_id")
        return {"status": delivery.outcomes[0].status,
                **({"message_id": sent_id} if isinstance(sent_id, str) else {})}


async def _maybe_await(result: Any) -> Any:
    # python-socketio 5.8's enter_room/leave_room are plain functions; later
    # releases made them coroutines on the async server.
    if inspect.isawaitable(result):
        return await result
    return result
