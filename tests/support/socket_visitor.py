"""A web chat visitor on socket.io, speaking the Rasa webchat protocol, for end-to-end tests."""
import asyncio
from typing import Any, Optional

import socketio


class SocketVisitor:
    """``async with SocketVisitor(base_url) as visitor``: connected (long polling), session confirmed.

    ``visitor.session`` is the visitor token the server confirmed; ``say``
    sends a message; ``expect(event)`` waits for the next event of that name.
    """

    def __init__(self, base_url: str, timeout: float = 60) -> None:
        self.base_url, self.timeout = base_url, timeout
        self.client = socketio.AsyncClient(reconnection=False)
        self.events: asyncio.Queue = asyncio.Queue()
        self.session: Optional[str] = None
        for name in ("session_confirm", "bot_uttered", "error"):
            self.client.on(name, lambda data, name=name: self.events.put_nowait((name, data)))

    async def __aenter__(self) -> "SocketVisitor":
        await self.client.connect(self.base_url, socketio_path="/socket.io", transports=["polling"],
                                  wait_timeout=20)
        await self.client.emit("session_request", {"session_id": None})
        self.session = await self.expect("session_confirm")
        return self

    async def expect(self, name: str) -> Any:
        """The data of the next ``name`` event (others before it are skipped)."""
        while True:
            got, data = await asyncio.wait_for(self.events.get(), self.timeout)
            if got == name:
                return data

    async def say(self, text: str) -> None:
        """Send a customer message."""
        await self.client.emit("user_uttered", {"message": text, "session_id": self.session})

    async def __aexit__(self, *exc: Any) -> None:
        await self.client.disconnect()
        await self.client.eio.wait()
        if self.client.eio.http is not None:
            await self.client.eio.http.close()
