"""A local HTTP server standing in for a platform API (Meta, Telegram, Twilio, jambonz...).

Real HTTP on 127.0.0.1 and a random port, served from a background thread, so
it works the same from sync and async tests::

    with Recorder() as api:
        os.environ["WHATSAPP_API_BASE"] = api.url
        api.respond("/v21.0/123/messages", status=429, headers={"Retry-After": "1"}, times=1)
        ...                                   # code under test calls api.url + path
        api.wait_for(2)                       # two requests arrived
        assert api.requests[-1].json["to"] == "15551234567"

Scripted responses are matched by path prefix, newest first; one with
``times=n`` is used n times and then falls through to the next match, and in
the end to ``default`` (by default a platform-plausible 200, see
``platform_default``).
"""
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, Optional, Tuple, Union
from urllib.parse import parse_qs, urlsplit

# Telegram Bot API paths end in /bot<token>/<method>, whatever prefix the base URL has.
_TELEGRAM_METHOD = re.compile(r"/bot[^/]+/(\w+)$")

DefaultResponder = Callable[["RecordedRequest"], Tuple[int, Any]]


@dataclass
class RecordedRequest:
    """One request the recorder received."""

    method: str
    path: str
    query: Dict[str, List[str]]
    headers: Dict[str, str]
    body: bytes
    time: float

    @property
    def json(self) -> Any:
        """The body parsed as JSON, or None if it is not JSON."""
        try:
            return json.loads(self.body) if self.body else None
        except ValueError:
            return None

    @property
    def form(self) -> Dict[str, List[str]]:
        """The body parsed as application/x-www-form-urlencoded."""
        return parse_qs(self.body.decode("utf-8", "replace"))

    def header(self, name: str) -> Optional[str]:
        """A header value, case-insensitively."""
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return None


@dataclass
class _Script:
    path_prefix: str
    status: int
    json: Any = None
    body: Optional[bytes] = None
    content_type: Optional[str] = None
    headers: Dict[str, str] = field(default_factory=dict)
    times: Optional[int] = None
    delay: float = 0.0


def platform_default(request: RecordedRequest) -> Tuple[int, Any]:
    """A plausible success answer for WhatsApp Cloud API and Telegram Bot API calls."""
    payload = request.json if isinstance(request.json, dict) else {}
    telegram = _TELEGRAM_METHOD.search(request.path)
    if telegram:
        method = telegram.group(1)
        if method == "answerCallbackQuery":
            return 200, {"ok": True, "result": True}
        return 200, {
            "ok": True,
            "result": {
                "message_id": int(time.time() * 1000) % 10_000_000,
                "date": int(time.time()),
                "chat": {"id": payload.get("chat_id"), "type": "private"},
                "text": payload.get("text", ""),
            },
        }
    if request.path.endswith("/messages") and payload.get("messaging_product") == "whatsapp":
        to = payload.get("to") or payload.get("recipient")
        return 200, {
            "messaging_product": "whatsapp",
            "contacts": [{"input": to, "wa_id": to}],
            "messages": [{"id": f"wamid.recorder{int(time.time() * 1e6)}"}],
        }
    return 200, {"ok": True}


class Recorder:
    """Records every request and answers with scripted or default responses."""

    def __init__(self, default: DefaultResponder = platform_default, host: str = "127.0.0.1") -> None:
        self.default = default
        self.host = host
        self.requests: List[RecordedRequest] = []
        self._scripts: List[_Script] = []
        self._condition = threading.Condition()
        self._server: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None

    # ------------------------------------------------------------ lifecycle

    def start(self) -> "Recorder":
        """Start serving on a random free port."""
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes; with Nagle on, the body
            # waits for the client's delayed ACK (~40 ms per request).
            disable_nagle_algorithm = True

            def _handle(self) -> None:
                recorder._serve(self)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

        self._server = ThreadingHTTPServer((self.host, 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="recorder", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "Recorder":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321`` (no trailing slash)."""
        if self._server is None:
            raise RuntimeError("Recorder is not running")
        return f"http://{self.host}:{self._server.server_address[1]}"

    # ------------------------------------------------------------- scripting

    def respond(
        self,
        path_prefix: str = "/",
        status: int = 200,
        json: Any = None,
        headers: Optional[Dict[str, str]] = None,
        times: Optional[int] = None,
        body: Union[bytes, str, None] = None,
        content_type: Optional[str] = None,
        delay: float = 0.0,
    ) -> None:
        """Script the answer to requests whose path starts with ``path_prefix``.

        ``json`` or raw ``body`` (with ``content_type``, e.g. TwiML) give the
        body; neither means the default responder's body with this status.
        ``times`` limits how often this answer is used; ``delay`` (seconds)
        holds the answer back, to simulate a slow platform.
        """
        raw = body.encode("utf-8") if isinstance(body, str) else body
        with self._condition:
            self._scripts.insert(
                0, _Script(path_prefix, status, json, raw, content_type, dict(headers or {}), times, delay)
            )

    def clear(self) -> None:
        """Forget recorded requests and scripted answers."""
        with self._condition:
            self.requests.clear()
            self._scripts.clear()

    def wait_for(
        self,
        condition: Union[int, Callable[[List[RecordedRequest]], bool]] = 1,
        timeout: float = 5.0,
    ) -> List[RecordedRequest]:
        """Block until ``condition`` holds (a request count, or a predicate on the list).

        Returns a copy of the requests; raises ``AssertionError`` on timeout.
        """
        if isinstance(condition, int):
            count = condition

            def check(requests: List[RecordedRequest]) -> bool:
                return len(requests) >= count

        else:
            check = condition
        deadline = time.monotonic() + timeout
        with self._condition:
            while not check(self.requests):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"Recorder: condition not met within {timeout}s; got {len(self.requests)} request(s): "
                        + ", ".join(f"{r.method} {r.path}" for r in self.requests)
                    )
                self._condition.wait(left)
            return list(self.requests)

    def requests_to(self, path_prefix: str) -> List[RecordedRequest]:
        """Recorded requests whose path starts with ``path_prefix``."""
        with self._condition:
            return [r for r in self.requests if r.path.startswith(path_prefix)]

    # --------------------------------------------------------------- serving

    def _pick_script(self, path: str) -> Optional[_Script]:
        with self._condition:
            for script in self._scripts:
                if path.startswith(script.path_prefix) and (script.times is None or script.times > 0):
                    if script.times is not None:
                        script.times -= 1
                    return script
        return None

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        parts = urlsplit(handler.path)
        request = RecordedRequest(
            method=handler.command,
            path=parts.path,
            query=parse_qs(parts.query),
            headers=dict(handler.headers.items()),
            body=body,
            time=time.time(),
        )
        script = self._pick_script(parts.path)
        if script is not None and script.delay:
            time.sleep(script.delay)
        default_status, default_json = self.default(request)
        status = script.status if script else default_status
        headers = dict(script.headers) if script else {}
        if script is not None and script.body is not None:
            payload = script.body
            content_type = script.content_type or "application/octet-stream"
        else:
            if script is not None and script.json is not None:
                data = script.json
            elif script is not None and status >= 400:
                data = {"error": {"code": status, "message": "scripted failure"}}
            else:
                data = default_json
            payload = json.dumps(data).encode("utf-8")
            content_type = "application/json"
        # Record before answering, so a client that got its answer sees the request.
        with self._condition:
            self.requests.append(request)
            self._condition.notify_all()
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(payload)))
        for key, value in headers.items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(payload)
