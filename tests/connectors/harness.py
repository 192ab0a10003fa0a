"""Run a connector for real: Rasa's own ``configure_app`` on a random port, in a thread.

``serve_channel(channel)`` registers the channel's blueprint exactly as
``rasa run`` does (``rasa.core.run.configure_app`` -> ``channel.register``), but
with ``app.ctx.agent`` set to ``EchoAgent``: it records every ``UserMessage`` and
answers through the message's output channel like Rasa's processor does
(``output_channel.send_response(sender_id, response)``), so a test can assert
the exact requests the platform API (a ``Recorder``) receives.
"""
import asyncio
import contextlib
import socket
import threading
from typing import Any, Callable, Dict, Iterator, List, Optional

from rasa.core.channels.channel import InputChannel, UserMessage
from rasa.core.run import configure_app
from sanic import Sanic

Responder = Callable[[UserMessage], List[Dict[str, Any]]]


def echo_responses(message: UserMessage) -> List[Dict[str, Any]]:
    """Default bot: echoes the text; "buttons N" answers with N buttons."""
    text = message.text or ""
    if text.startswith("buttons "):
        count = int(text.split()[1])
        return [
            {
                "text": "Pick one",
                "buttons": [{"title": f"Option {i}", "payload": f"/choose{{\"n\":{i}}}"} for i in range(1, count + 1)],
            }
        ]
    return [{"text": f"You said: {text}"}]


class EchoAgent:
    """Stands in for ``rasa.core.agent.Agent`` behind ``app.ctx.agent``."""

    def __init__(self, responder: Responder = echo_responses) -> None:
        self.responder = responder
        self.messages: List[UserMessage] = []
        self.tracker_store = None
        self._lock = threading.Lock()

    async def handle_message(self, message: UserMessage) -> None:
        """Record the message and send the responses through its output channel."""
        with self._lock:
            self.messages.append(message)
        for response in self.responder(message):
            await message.output_channel.send_response(message.sender_id, dict(response))


class ServerThread:
    """A Sanic app served from its own event loop in a background thread."""

    def __init__(self, app: Sanic) -> None:
        self.app = app
        self.port: Optional[int] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None
        self._ready = threading.Event()
        self._error: Optional[BaseException] = None

    @property
    def url(self) -> str:
        """Base URL of the running app."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "ServerThread":
        """Start serving; returns once the app accepts requests."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self._thread = threading.Thread(target=self._run, args=(sock,), name="sanic-test", daemon=True)
        self._thread.start()
        if not self._ready.wait(20):
            raise RuntimeError("test server did not start")
        if self._error:
            raise self._error
        return self

    def _run(self, sock: socket.socket) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            server = loop.run_until_complete(
                self.app.create_server(sock=sock, return_asyncio_server=True, access_log=False)
            )
            loop.run_until_complete(server.startup())
            loop.run_until_complete(server.before_start())
            loop.run_until_complete(server.after_start())
        except BaseException as exc:  # surface start-up errors in the test
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(server.before_stop())
            server.close()
            loop.run_until_complete(server.wait_closed())
            for connection in list(server.connections):
                connection.close_if_idle()
            loop.run_until_complete(server.after_stop())
            pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def stop(self) -> None:
        """Stop the loop and wait for the thread."""
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)


@contextlib.contextmanager
def serve_channel(channel: InputChannel, agent: Optional[EchoAgent] = None) -> Iterator["Served"]:
    """Serve ``channel`` under ``/webhooks/<name>/`` exactly as ``rasa run`` would."""
    Sanic.test_mode = True  # configure_app reuses one app name
    app = configure_app([channel], enable_api=False)
    app.ctx.agent = agent or EchoAgent()
    server = ServerThread(app).start()
    try:
        yield Served(server, app.ctx.agent, channel)
    finally:
        server.stop()


class Served:
    """What ``serve_channel`` yields: the base URL, the agent and the channel."""

    def __init__(self, server: ServerThread, agent: EchoAgent, channel: InputChannel) -> None:
        self.server = server
        self.agent = agent
        self.channel = channel

    @property
    def url(self) -> str:
        """Base URL of the channel's routes, e.g. ``http://127.0.0.1:5/webhooks/whatsapp``."""
        return f"{self.server.url}/webhooks/{self.channel.name()}"
