"""The agent desk (``agent``): a Rasa input channel serving the desk under ``/webhooks/agent/``.

credentials.yml::

    connectors.agent.AgentDeskInput:
      tokens_env: AGENT_TOKENS

``tokens_env`` names the environment variable with the agents' tokens
(``"alice:token-a,bob:token-b"``); unset or empty, the desk is still served but
refuses every sign-in and says why. Sessions, cookies and CSRF: see
``connectors.agent.auth``; live updates: ``connectors.agent.live``; what the
desk does to a conversation: ``connectors.agent.conversation``.

Routes (all but ``/health``, ``/login`` and ``/static`` need a signed-in agent:
401 otherwise, with the sign-in form as the page; a case another agent owns
answers 403)::

    GET  /                      the queue of open cases (live)
    GET  /queue                 the queue's rows (HTML fragment)
    GET  /events[?case=N]       server-sent events: case changes, new messages
    GET  /cases/N               context package, whole timeline, reply box
    GET  /cases/N/timeline      the timeline (HTML fragment)
    POST /cases/N/accept        take the case: the bot pauses (409 if another agent has it)
    POST /cases/N/reply         text=... to the customer on their last channel
    POST /cases/N/handback      the bot resumes where it left off
    POST /cases/N/close         resolution=... closes the case (the bot resumes)
    GET|POST /login, POST /logout, GET /health, GET /static/...

POSTs answer 303 to the case page, or JSON when the request accepts
``application/json`` (what the page's script sends).
"""
import asyncio
import logging
import secrets
from functools import wraps
from pathlib import Path
from typing import Any, Awaitable, Callable, Dict, Optional, Tuple

from rasa.core.channels.channel import InputChannel, UserMessage
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from connectors.agent import dashboard
from connectors.agent import journeys as journey_routes
from connectors.agent import views
from connectors.agent.auth import (
    CSRF_FIELD,
    CSRF_HEADER,
    LOGIN_COOKIE,
    LOGIN_FAILURE_LIMIT,
    SESSION_COOKIE,
    AgentDirectory,
    Session,
    SessionStore,
    csrf_ok,
)
from connectors.agent.conversation import Conversation, DeliveryError
from connectors.agent.live import DeskHub, attach_broker, sse
from connectors import server
from connectors.base import run_sync
from threadline import handoff, settings
from threadline.keys import Keys
from threadline.limits import Budget
from threadline.db import cases
from threadline.db.cases import CaseConflict, CaseInfo

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent.parent / "static" / "agent"
REPLY_LIMIT = 4000
HEARTBEAT_SECONDS = 15
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


class Refusal(Exception):
    """A request the desk turns down: HTTP ``status`` with a message for the agent."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _wants_json(request: Request) -> bool:
    return "application/json" in (request.headers.get("accept") or "")


class AgentDeskInput(InputChannel):
    """Serves the agent desk; it receives no customer messages itself."""

    @classmethod
    def name(cls) -> str:
        """Routes live under ``/webhooks/agent/``."""
        return "agent"

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[str, Any]]) -> "AgentDeskInput":
        """Read the agents from the variable ``tokens_env`` names (default ``AGENT_TOKENS``)."""
        variable = (credentials or {}).get("tokens_env") or "AGENT_TOKENS"
        directory = AgentDirectory(settings.get().get_raw(variable) if variable in settings.VARIABLES else None,
                                   variable)
        if not directory.enabled:
            logger.warning("agent desk: %s is not set; every sign-in will be refused", variable)
        return cls(directory)

    def __init__(self, directory: AgentDirectory, sessions: Optional[SessionStore] = None,
                 hub: Optional[DeskHub] = None) -> None:
        self.directory = directory
        self.sessions = sessions or SessionStore()
        self.hub = hub or DeskHub()
        self.sign_in_budget = Budget("desk-sign-in", settings.get().integer("RATE_LIMIT_SIGN_IN"), 60)

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def base(request: Request) -> str:
        """The desk's URL prefix, e.g. ``/webhooks/agent``."""
        return request.app.url_for("threadline_agent.queue_page").rstrip("/")

    async def session(self, request: Request) -> Session:
        """The signed-in agent, or a 401 refusal."""
        session = await run_sync(self.sessions.load, request.cookies.get(SESSION_COOKIE))
        if session is None or session.agent not in self.directory:
            raise Refusal(401, "Please sign in.")
        return session

    @staticmethod
    def check_csrf(request: Request, session: Session) -> None:
        """Refuse a POST without the session's CSRF token."""
        given = request.headers.get(CSRF_HEADER) or (request.form.get(CSRF_FIELD) if request.form else None)
        if not csrf_ok(session, given):
            raise Refusal(403, "This form has expired (missing or wrong CSRF token). Reload the page and try again.")

    @staticmethod
    async def case_for(case_id: int, agent: Optional[str]) -> CaseInfo:
        """The case if ``agent`` may see it: 404 if there is none, 403 if another agent owns it.

        ``agent`` None skips the ownership check.
        """
        case = await run_sync(cases.get_case, case_id)
        if case is None:
            raise Refusal(404, f"There is no case #{case_id}.")
        if agent is not None and case.agent not in (None, agent):
            raise Refusal(403, f"Case #{case_id} belongs to {case.agent}.")
        return case

    def refuse(self, request: Request, refusal: Refusal, session: Optional[Session] = None) -> HTTPResponse:
        """Render a refusal as JSON, the sign-in page (401) or a message page."""
        if _wants_json(request) or request.path.endswith("/events"):
            return response.json({"ok": False, "error": refusal.message}, status=refusal.status)
        base = self.base(request)
        if refusal.status == 401:
            return self.login_response(request, refusal.status)
        agent, csrf = (session.agent, session.csrf) if session else (None, None)
        title = {403: "Not allowed", 404: "Not found", 409: "Not possible now"}.get(refusal.status, "Refused")
        return response.html(views.message_page(base, title, refusal.message, agent=agent, csrf=csrf),
                             status=refusal.status)

    def login_response(self, request: Request, status: int = 200, error: Optional[str] = None) -> HTTPResponse:
        """The sign-in page, with a fresh pre-session cookie its CSRF token is bound to."""
        nonce = secrets.token_urlsafe(24)
        page = views.login_page(self.base(request), self.sessions.login_token(nonce), error=error,
                                enabled=self.directory.enabled)
        result = response.html(page, status=status)
        self._cookie(request, result, LOGIN_COOKIE, nonce, max_age=3600)
        return result

    def _cookie(self, request: Request, result: HTTPResponse, name: str, value: str, max_age: int) -> None:
        result.cookies[name] = value
        cookie = result.cookies[name]
        cookie["path"] = self.base(request) + "/"
        cookie["httponly"] = True
        cookie["samesite"] = "Strict"
        cookie["max-age"] = max_age
        secure = settings.get().get_raw("AGENT_COOKIE_SECURE")
        if secure == "1" or (secure is None and (settings.get().production or server.request_scheme(request) == "https")):
            cookie["secure"] = True

    def done(self, request: Request, case: CaseInfo, message: str) -> HTTPResponse:
        """Success of a POST on a case: JSON for the script, else back to the case page."""
        if _wants_json(request):
            return response.json({"ok": True, "message": message, "case": handoff.summary(case)})
        return response.redirect(f"{self.base(request)}/cases/{case.id}", status=303)

    def guarded(self, handler: Callable[..., Awaitable[HTTPResponse]]) -> Callable[..., Awaitable[HTTPResponse]]:
        """Turn ``Refusal`` raised by ``handler`` into its response."""

        @wraps(handler)
        async def wrapped(request: Request, *args: Any, **kwargs: Any) -> HTTPResponse:
            try:
                return await handler(request, *args, **kwargs)
            except Refusal as refusal:
                session = None
                if refusal.status != 401:
                    session = await run_sync(self.sessions.load, request.cookies.get(SESSION_COOKIE))
                return self.refuse(request, refusal, session)

        return wrapped

    # ------------------------------------------------------------------- routes

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        """The desk's pages, actions and event stream."""
        blueprint = Blueprint("threadline_agent", __name__)
        blueprint.static("/static", str(STATIC_DIR), name="static")
        guarded = self.guarded

        @blueprint.listener("after_server_start")
        async def start_live_updates(app: Any, _: Any) -> None:
            attach_broker(getattr(app.ctx, "agent", None))
            await self.hub.start()

        @blueprint.listener("before_server_stop")
        async def stop_live_updates(*_: Any) -> None:
            await self.hub.stop()

        @blueprint.middleware("response")
        async def security_headers(request: Request, result: HTTPResponse) -> None:
            for key, value in SECURITY_HEADERS.items():
                result.headers.setdefault(key, value)
            if not request.path.startswith(self.base(request) + "/static/"):
                result.headers["Cache-Control"] = "no-store"

        @blueprint.route("/health", methods=["GET"])
        async def health(_: Request) -> HTTPResponse:
            return response.json({"status": "ok", "channel": self.name(), "sign_in": self.directory.enabled})

        @blueprint.route("/", methods=["GET"], name="queue_page")
        @guarded
        async def queue_page(request: Request) -> HTTPResponse:
            session = await self.session(request)
            open_cases = await run_sync(cases.list_cases)
            return response.html(views.queue_page(open_cases, agent=session.agent, csrf=session.csrf,
                                                  base=self.base(request)))

        @blueprint.route("/queue", methods=["GET"])
        @guarded
        async def queue_fragment(request: Request) -> HTTPResponse:
            session = await self.session(request)
            open_cases = await run_sync(cases.list_cases)
            return response.html(views.queue_rows(open_cases, session.agent, self.base(request)))

        @blueprint.route("/login", methods=["GET"])
        async def login_form(request: Request) -> HTTPResponse:
            return self.login_response(request)

        @blueprint.route("/login", methods=["POST"])
        async def login(request: Request) -> HTTPResponse:
            return await self.sign_in(request)

        @blueprint.route("/logout", methods=["POST"])
        @guarded
        async def logout(request: Request) -> HTTPResponse:
            session = await self.session(request)
            self.check_csrf(request, session)
            await run_sync(self.sessions.end, session)
            result = response.redirect(f"{self.base(request)}/login", status=303)
            self._cookie(request, result, SESSION_COOKIE, "", max_age=0)
            return result

        @blueprint.route("/events", methods=["GET"])
        @guarded
        async def events(request: Request) -> HTTPResponse:
            return await self.stream(request)

        @blueprint.route("/cases/<case_id:int>", methods=["GET"])
        @guarded
        async def case_page(request: Request, case_id: int) -> HTTPResponse:
            session = await self.session(request)
            case = await self.case_for(case_id, session.agent)
            history = await Conversation(request.app, case.customer_ref).history()
            return response.html(views.case_page(case, history, agent=session.agent, csrf=session.csrf,
                                                 base=self.base(request)))

        @blueprint.route("/cases/<case_id:int>/timeline", methods=["GET"])
        @guarded
        async def timeline(request: Request, case_id: int) -> HTTPResponse:
            session = await self.session(request)
            case = await self.case_for(case_id, session.agent)
            history = await Conversation(request.app, case.customer_ref).history()
            return response.html(views.timeline_items(history))

        journey_routes.register(blueprint, self)
        dashboard.register(blueprint, self)

        @blueprint.route("/cases/<case_id:int>/<step:accept|reply|handback|close>", methods=["POST"])
        @guarded
        async def act(request: Request, case_id: int, step: str) -> HTTPResponse:
            session = await self.session(request)
            self.check_csrf(request, session)
            # Accepting a case someone else has is a lost race (409), not a trespass.
            case = await self.case_for(case_id, None if step == "accept" else session.agent)
            step_handler = {"accept": self.accept, "reply": self.reply,
                            "handback": self.hand_back, "close": self.close}[step]
            case, message = await step_handler(request, session, case)
            return self.done(request, case, message)

        return blueprint

    # ------------------------------------------------------------ sign-in

    async def sign_in(self, request: Request) -> HTTPResponse:
        """Check the sign-in form; on success start a session and go to the queue."""
        if not self.directory.enabled:
            return self.login_response(request, 403)
        client = server.client_address(request)
        attempts = await run_sync(self.sign_in_budget.hit, self.sessions.redis(), Keys(), client)
        if not attempts.allowed or await run_sync(self.sessions.failures, client) >= LOGIN_FAILURE_LIMIT:
            result = self.login_response(request, 429, "Too many sign-in attempts. Wait a few minutes and try again.")
            result.headers.update(server.retry_after_headers(attempts.retry_after or 60))
            return result
        form = request.form or {}
        if not self.sessions.login_token_ok(request.cookies.get(LOGIN_COOKIE), form.get(CSRF_FIELD)):
            return self.login_response(request, 403, "The sign-in form expired. Please try again.")
        name, token = (form.get("agent") or "").strip(), form.get("token") or ""
        if not await run_sync(self.directory.verify, name, token):
            await run_sync(self.sessions.record_failure, client)
            return self.login_response(request, 401, "Unknown agent or wrong token.")
        session = await run_sync(self.sessions.create, name)
        result = response.redirect(f"{self.base(request)}/", status=303)
        self._cookie(request, result, SESSION_COOKIE, self.sessions.cookie_value(session),
                     max_age=self.sessions.ttl)
        self._cookie(request, result, LOGIN_COOKIE, "", max_age=0)
        return result

    # ------------------------------------------------------------ case steps

    async def accept(self, request: Request, session: Session, case: CaseInfo) -> Tuple[CaseInfo, str]:
        """Take the case (one agent wins); the bot pauses."""
        try:
            case = await run_sync(cases.accept_case, case.id, session.agent)
        except CaseConflict as conflict:
            raise Refusal(409, _conflict_message(conflict.case, session.agent)) from conflict
        told = await Conversation(request.app, case.customer_ref).take_over(case)
        await run_sync(handoff.notify, case, "accepted")
        return case, f"You have case #{case.id}. The bot is paused. Your greeting: {told.describe()}"

    async def reply(self, request: Request, session: Session, case: CaseInfo) -> Tuple[CaseInfo, str]:
        """Send the agent's text on the customer's last channel."""
        text = (request.form.get("text") or "").strip() if request.form else ""
        if case.status != "accepted":
            raise Refusal(409, _conflict_message(case, session.agent) + " Your reply was not sent.")
        if not text:
            raise Refusal(400, "The reply is empty.")
        if len(text) > REPLY_LIMIT:
            raise Refusal(400, f"The reply is longer than {REPLY_LIMIT} characters.")
        try:
            delivered = await Conversation(request.app, case.customer_ref).reply(case, text)
        except DeliveryError as failure:
            raise Refusal(409 if failure.unreachable else 502, str(failure)) from failure
        return case, delivered.describe()

    async def hand_back(self, request: Request, session: Session, case: CaseInfo) -> Tuple[CaseInfo, str]:
        """End the agent's part: the bot resumes with every slot intact."""
        if case.status != "accepted":
            raise Refusal(409, _conflict_message(case, session.agent))
        note = (request.form.get("resolution") or "").strip() if request.form else ""
        return await self._close(request, session, case, "handed_back", note or "Handed back to the bot")

    async def close(self, request: Request, session: Session, case: CaseInfo) -> Tuple[CaseInfo, str]:
        """Close with a resolution note; a paused bot resumes."""
        note = (request.form.get("resolution") or "").strip() if request.form else ""
        if not note:
            raise Refusal(400, "Write a resolution note to close the case.")
        return await self._close(request, session, case, "resolved", note)

    async def _close(self, request: Request, session: Session, case: CaseInfo, outcome: str,
                     note: str) -> Tuple[CaseInfo, str]:
        was_paused = case.status == "accepted"
        try:
            closed = await run_sync(cases.close_case, case.id, session.agent, outcome, note)
        except CaseConflict as conflict:
            raise Refusal(409, _conflict_message(conflict.case, session.agent)) from conflict
        await Conversation(request.app, closed.customer_ref).give_back(closed, was_paused)
        await run_sync(handoff.notify, closed, "closed")
        return closed, f"Case #{closed.id} is closed; the bot is answering again."

    # ------------------------------------------------------------ live

    async def stream(self, request: Request) -> HTTPResponse:
        """Server-sent events for the queue, or for one case with ``?case=N``."""
        session = await self.session(request)
        case = None
        if request.args.get("case") is not None:
            value = request.args.get("case")
            if not (value.isascii() and value.isdigit()) or len(value) > 12:
                raise Refusal(400, "case must be a case number")
            case = await self.case_for(int(request.args.get("case")), session.agent)
        attach_broker(getattr(request.app.ctx, "agent", None))
        await self.hub.start()
        subscriber = self.hub.subscribe(session.agent, case.id if case else None,
                                        case.customer_ref if case else None)
        try:
            await self.hub.following()  # "hello" promises that every message from now on is streamed
            stream = await request.respond(
                content_type="text/event-stream",
                headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
            )
            await stream.send("retry: 1000\n\n" + sse("hello", {"agent": session.agent}))
            while True:
                try:
                    kind, data = await asyncio.wait_for(subscriber.queue.get(), HEARTBEAT_SECONDS)
                except asyncio.TimeoutError:
                    if await run_sync(self.sessions.load, request.cookies.get(SESSION_COOKIE)) is None:
                        await stream.send(sse("signed_out", {}))
                        break
                    await stream.send(": ping\n\n")
                    continue
                await stream.send(sse(kind, data))
            await stream.eof()
        finally:
            self.hub.unsubscribe(subscriber)
        return stream


def _conflict_message(case: Optional[CaseInfo], agent: str) -> str:
    """Why a case step is not possible now, in the agent's terms."""
    if case is None:
        return "The case does not exist."
    if case.status == "closed":
        how = "handed back to the bot" if case.outcome == "handed_back" else "resolved"
        return f"Case #{case.id} is closed ({how} by {case.closed_by})."
    if case.status == "accepted" and case.agent != agent:
        return f"Case #{case.id} was already accepted by {case.agent}."
    if case.status == "accepted":
        return f"You already have case #{case.id}."
    return f"Case #{case.id} is still waiting in the queue: accept it first."
