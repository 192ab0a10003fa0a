"""Driving the agent desk over HTTP like a browser: sign in, act on cases, read its live events.

    desk = DeskClient("http://127.0.0.1:5005/webhooks/agent")
    alice = desk.sign_in("alice", "alice-token")
    with desk.stream(alice) as events:           # GET /events (server-sent events)
        ...                                      # something opens a case
        data, at = events.next("case", where=lambda d: d["case"]["customer_ref"] == customer)
    desk.post(alice, case_id, "accept")
"""
import json
import queue
import re
import threading
import time
from typing import Any, Callable, Dict, Optional, Tuple

import requests


class EventStream:
    """A server-sent event stream read in a background thread."""

    def __init__(self, browser: requests.Session, url: str) -> None:
        self.events: "queue.Queue[Tuple[str, Dict[str, Any], float]]" = queue.Queue()
        self.response = browser.get(url, stream=True, timeout=10)
        if self.response.status_code != 200:
            raise AssertionError(f"GET {url}: {self.response.status_code} {self.response.text[:200]}")
        threading.Thread(target=self._read, name="sse-reader", daemon=True).start()

    def _read(self) -> None:
        kind = None
        try:
            for line in self.response.iter_lines(decode_unicode=True):
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    self.events.put((kind, json.loads(line[6:]), time.time()))
        except Exception:  # the stream was closed
            pass

    def next(self, kind: str, timeout: float = 5.0,
             where: Callable[[Dict[str, Any]], bool] = lambda data: True) -> Tuple[Dict[str, Any], float]:
        """The next event of ``kind`` matching ``where``, and when it arrived (epoch seconds)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {kind!r} event within {timeout}s")
            try:
                got, data, at = self.events.get(timeout=left)
            except queue.Empty:
                continue
            if got == kind and where(data):
                return data, at

    def close(self) -> None:
        """Stop reading."""
        self.response.close()

    def __enter__(self) -> "EventStream":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class DeskClient:
    """The desk at ``base`` (e.g. ``http://127.0.0.1:5005/webhooks/agent``)."""

    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")

    def sign_in(self, name: str, token: str) -> requests.Session:
        """A session signed in as ``name``; its CSRF token is ``session.csrf``."""
        browser = requests.Session()
        form = browser.get(f"{self.base}/login", timeout=10)
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
        answer = browser.post(f"{self.base}/login", data={"agent": name, "token": token, "csrf": csrf},
                              allow_redirects=False, timeout=10)
        if answer.status_code != 303:
            raise AssertionError(f"sign-in as {name} failed: {answer.status_code}")
        page = browser.get(f"{self.base}/", timeout=10)
        browser.csrf = re.search(r'data-csrf="([^"]+)"', page.text).group(1)
        return browser

    def post(self, browser: requests.Session, case_id: int, step: str, json_reply: bool = True,
             **form: Any) -> requests.Response:
        """POST a case step (accept, reply, handback, close) with the session's CSRF token."""
        headers = {"Accept": "application/json"} if json_reply else {}
        return browser.post(f"{self.base}/cases/{case_id}/{step}", data=dict(form, csrf=browser.csrf),
                            headers=headers, allow_redirects=False, timeout=30)

    def stream(self, browser: requests.Session, case_id: Optional[int] = None) -> EventStream:
        """Open the live event stream (of one case, or of the queue)."""
        url = f"{self.base}/events" + (f"?case={case_id}" if case_id is not None else "")
        events = EventStream(browser, url)
        events.next("hello")
        return events
