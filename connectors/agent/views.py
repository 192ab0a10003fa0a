"""Server-rendered HTML of the agent desk: sign-in, queue, case.

Plain pages that work without JavaScript; ``static/agent/desk.js`` adds the
live parts (server-sent events) and the reply box. Every value from a
conversation goes through ``esc``; the pages load no inline script (the
Content-Security-Policy forbids it), so data reaches the script through
``data-`` attributes.
"""
import datetime as dt
import json
from html import escape
from typing import Any, Iterable, List, Optional

from rasa.shared.core.events import (
    BotUttered,
    ConversationPaused,
    ConversationResumed,
    Event,
    SessionStarted,
    SlotSet,
    UserUttered,
)

from threadline.db.cases import CaseInfo
from threadline.handoff import reason_label


def esc(value: Any) -> str:
    """HTML-escaped text of ``value`` ("" for None)."""
    return "" if value is None else escape(str(value), quote=True)


def _when(value: Any) -> str:
    """A ``<time>`` element for a datetime (naive UTC) or epoch seconds; the script localises it."""
    if value is None:
        return ""
    if isinstance(value, (int, float)):
        value = dt.datetime.utcfromtimestamp(value)
    iso = value.replace(microsecond=0).isoformat() + "Z"
    return f'<time datetime="{iso}">{value:%H:%M:%S} UTC</time>'


def badge(channel: Optional[str]) -> str:
    """A channel badge."""
    name = channel or "unknown"
    return f'<span class="badge ch-{esc(name)}">{esc(name)}</span>'


def page(title: str, body: str, *, base: str, kind: str, agent: Optional[str] = None,
         csrf: Optional[str] = None, case_id: Optional[int] = None, scripts: Iterable[str] = ()) -> str:
    """A whole desk page (``scripts``: more of the desk's static scripts, by path under ``/static``)."""
    signed_in = ""
    if agent:
        signed_in = (
            f'<a class="nav" href="{esc(base)}/dashboard">Dashboard</a>'
            f'<span class="live" id="live" title="live updates">offline</span>'
            f'<span class="me">Signed in as <b>{esc(agent)}</b></span>'
            f'<form method="post" action="{esc(base)}/logout" class="inline">'
            f'<input type="hidden" name="csrf" value="{esc(csrf)}"><button type="submit">Sign out</button></form>'
        )
    data = f'data-page="{esc(kind)}" data-base="{esc(base)}"'
    if csrf:
        data += f' data-csrf="{esc(csrf)}"'
    if case_id is not None:
        data += f' data-case="{case_id}"'
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)} · Threadline desk</title>"
        f'<link rel="stylesheet" href="{esc(base)}/static/desk.css">'
        f'<script src="{esc(base)}/static/desk.js" defer></script>'
        + "".join(f'<script src="{esc(base)}/static/{esc(src)}" defer></script>' for src in scripts)
        + "</head>"
        f"<body {data}>"
        f'<header class="top"><a class="brand" href="{esc(base)}/">Threadline desk</a>{signed_in}</header>'
        f"<main>{body}</main></body></html>"
    )


def login_page(base: str, token: str, *, error: Optional[str] = None, enabled: bool = True) -> str:
    """The sign-in form (also the body of every 401)."""
    if not enabled:
        body = (
            '<section class="card narrow"><h1>Sign in</h1>'
            '<p class="error">Sign-in is disabled: no agents are configured. '
            "Set AGENT_TOKENS (for example <code>alice:token-a,bob:token-b</code>) and restart the server.</p>"
            "</section>"
        )
        return page("Sign in", body, base=base, kind="login")
    problem = f'<p class="error" role="alert">{esc(error)}</p>' if error else ""
    body = (
        '<section class="card narrow"><h1>Sign in</h1>'
        f"{problem}"
        f'<form method="post" action="{esc(base)}/login">'
        f'<input type="hidden" name="csrf" value="{esc(token)}">'
        '<label>Agent <input name="agent" autocomplete="username" required autofocus></label>'
        '<label>Token <input name="token" type="password" autocomplete="current-password" required></label>'
        '<button type="submit">Sign in</button></form></section>'
    )
    return page("Sign in", body, base=base, kind="login")


def message_page(base: str, title: str, text: str, *, agent: Optional[str] = None,
                 csrf: Optional[str] = None) -> str:
    """A page that only says why something was refused."""
    body = (
        f'<section class="card narrow"><h1>{esc(title)}</h1><p class="error" role="alert">{esc(text)}</p>'
        f'<p><a href="{esc(base)}/">Back to the queue</a></p></section>'
    )
    return page(title, body, base=base, kind="message", agent=agent, csrf=csrf)


# -------------------------------------------------------------------- queue


def _last_customer_text(case: CaseInfo) -> str:
    turns = [t for t in (case.context or {}).get("transcript") or [] if t.get("from") == "customer"]
    return turns[-1].get("text") or "" if turns else ""


def queue_rows(cases: Iterable[CaseInfo], agent: str, base: str) -> str:
    """The ``<tr>`` of each open case; cases other agents own show no details."""
    rows = []
    for case in cases:
        mine = case.agent in (None, agent)
        context = case.context or {}
        customer = context.get("customer") or {}
        if case.status == "accepted":
            status = f'<span class="status accepted">with {esc(case.agent)}</span>'
        else:
            status = '<span class="status queued">waiting</span>'
        flags = ""
        if case.unstaffed:
            flags += ' <span class="flag">out of hours</span>'
        if case.callback_requested:
            flags += ' <span class="flag">call back</span>'
        if case.customer_message:
            flags += ' <span class="flag">left a message</span>'
        if mine:
            link = f'<a href="{esc(base)}/cases/{case.id}">#{case.id}</a>'
            who = (f"{esc(customer.get('name') or 'Customer')}<br><small>{esc(case.customer_ref)}</small>")
            preview = esc(_last_customer_text(case))
        else:
            link, who, preview = f"#{case.id}", "<small>another agent's case</small>", ""
        rows.append(
            f'<tr data-case-id="{case.id}" data-status="{esc(case.status)}" data-mine="{str(mine).lower()}">'
            f"<td>{link}</td><td>{who}</td><td>{badge(context.get('channel')) if mine else ''}</td>"
            f"<td>{esc(reason_label(case.reason))}{flags}</td><td>{esc(case.queue)}</td>"
            f"<td>{_when(case.created_at)}</td><td>{status}</td>"
            f'<td class="preview">{preview}</td></tr>'
        )
    if not rows:
        return '<tr class="empty"><td colspan="8">No open cases. New ones appear here as they come in.</td></tr>'
    return "".join(rows)


def queue_page(cases: List[CaseInfo], *, agent: str, csrf: str, base: str) -> str:
    """The live list of open cases."""
    body = (
        '<section class="card"><h1>Open cases</h1>'
        '<table class="queue"><thead><tr><th>Case</th><th>Customer</th><th>Channel</th><th>Reason</th>'
        "<th>Queue</th><th>Since</th><th>Status</th><th>Latest message</th></tr></thead>"
        f'<tbody id="queue-rows">{queue_rows(cases, agent, base)}</tbody></table></section>'
    )
    return page("Queue", body, base=base, kind="queue", agent=agent, csrf=csrf)


# --------------------------------------------------------------------- case


def _value(value: Any) -> str:
    return esc(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str))


def _definitions(items: Iterable) -> str:
    return "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in items if v not in (None, ""))


def context_panel(case: CaseInfo) -> str:
    """The context package the bot built when it escalated."""
    context = case.context or {}
    customer = context.get("customer") or {}
    nlu = context.get("nlu") or {}
    sentiment = context.get("sentiment") or {}
    intent = nlu.get("intent") or (context.get("intent") or {}).get("name")
    confidence = nlu.get("confidence", (context.get("intent") or {}).get("confidence"))
    ranking = ", ".join(
        f"{esc(r.get('name'))} {float(r.get('confidence') or 0):.2f}" for r in nlu.get("ranking") or []
    )
    slots = "".join(
        f"<tr><th>{esc(k)}</th><td>{_value(v)}</td></tr>" for k, v in (context.get("slots") or {}).items()
    ) or '<tr><td colspan="2">none</td></tr>'
    entities = ", ".join(f"{esc(e.get('entity'))}={esc(e.get('value'))}" for e in nlu.get("entities") or [])
    scores = " ".join(f"{float(s):+.2f}" for s in sentiment.get("scores") or [])
    trust = customer.get("trust") or context.get("trust") or "anonymous"
    left = ""
    if case.customer_message or case.callback_requested:
        note = "Call back requested. " if case.callback_requested else ""
        left = f'<p class="left-message"><b>{note}Message from the customer:</b> {esc(case.customer_message)}</p>'
    transcript = "".join(
        f"<li>{badge(t.get('channel'))} <b>{esc(t.get('from'))}</b> {esc(t.get('text'))}</li>"
        for t in context.get("transcript") or []
    )
    summary = _definitions([
        ("Customer", f"{esc(customer.get('name') or 'unknown name')} <small>{esc(case.customer_ref)}</small>"),
        ("Trust", f'<span class="trust trust-{esc(trust)}">{esc(trust)}</span>'),
        ("Channels", " ".join(badge(c) for c in context.get("channels") or []) or None),
        ("Escalated because", esc(context.get("reason_label") or reason_label(case.reason))),
        ("Current intent", f"{esc(intent)} ({float(confidence or 0):.2f})" if intent else None),
        ("NLU ranking", ranking or None),
        ("Entities", entities or None),
        ("Task", esc(context.get("task")) if context.get("task") else None),
        ("Sentiment", (f"level {float(sentiment.get('level') or 0):.2f}, {esc(sentiment.get('trend'))}; "
                       f"scores {esc(scores)}" + (f"; {esc(', '.join(sentiment.get('cues') or []))}"
                                                  if sentiment.get("cues") else "")) if sentiment else None),
    ])
    return (
        '<section class="card context" id="context"><h2>Context</h2>'
        f"{left}<dl>{summary}</dl>"
        f'<h3>Slots</h3><table class="slots">{slots}</table>'
        f"<details><summary>Transcript when the bot escalated</summary><ol>{transcript}</ol></details>"
        "</section>"
    )


def timeline_items(events: Iterable[Event]) -> str:
    """The conversation, every session and channel, as ``<li>`` items."""
    items = []
    channel = None
    for event in events:
        if isinstance(event, UserUttered):
            channel = (event.metadata or {}).get("channel") or event.input_channel or channel
            intent = event.intent or {}
            nlu = ""
            if intent.get("name"):
                nlu = f'<span class="nlu">{esc(intent.get("name"))} {float(intent.get("confidence") or 0):.2f}</span>'
            items.append(_item("customer", "Customer", channel, event.timestamp, event.text, nlu))
        elif isinstance(event, BotUttered) and (event.text or (event.data or {}).get("buttons")):
            meta = event.metadata or {}
            agent = meta.get("agent")
            buttons = " ".join(
                f'<span class="button">{esc(b.get("title"))}</span>'
                for b in (event.data or {}).get("buttons") or [] if isinstance(b, dict)
            )
            who, kind, shown_on = (agent, "agent", channel) if agent else ("Bot", "bot", channel)
            if meta.get("journey"):  # a proactive journey's step, on the channel it went to
                who, kind = f"Journey {meta['journey']} ({meta.get('journey_step')})", "journey"
                shown_on = meta.get("delivery_channel") or channel
            items.append(_item(kind, who, shown_on, event.timestamp, event.text, buttons + _delivery(meta)))
        elif isinstance(event, ConversationPaused):
            items.append(_marker(event.timestamp, "Bot paused: an agent took over"))
        elif isinstance(event, ConversationResumed):
            items.append(_marker(event.timestamp, "Bot resumed"))
        elif isinstance(event, SessionStarted):
            items.append(_marker(event.timestamp, "New session"))
        elif isinstance(event, SlotSet) and event.key == "handoff_case" and event.value is not None:
            items.append(_marker(event.timestamp, f"Handoff case #{event.value} opened"))
    return "".join(items) or '<li class="marker">No messages yet.</li>'


def _item(kind: str, who: str, channel: Optional[str], timestamp: float, text: Optional[str], extra: str) -> str:
    return (
        f'<li class="item from-{kind}" data-channel="{esc(channel)}">{badge(channel)} '
        f'<span class="who">{esc(who)}</span> {_when(timestamp)}'
        f'<p class="text">{esc(text)}</p>{extra}</li>'
    )


def _delivery(metadata: Optional[dict]) -> str:
    """How a desk message was delivered, as the desk recorded it ("Sent on WhatsApp.")."""
    state = (metadata or {}).get("delivery")
    if not state:
        return ""
    from connectors.agent.conversation import Delivered

    told = Delivered(state, (metadata or {}).get("delivery_channel"), (metadata or {}).get("delivery_reason"))
    return f'<span class="delivery {esc(state)}">{esc(told.describe())}</span>'


def _marker(timestamp: float, text: str) -> str:
    return f'<li class="marker">{_when(timestamp)} {esc(text)}</li>'


def case_actions(case: CaseInfo, agent: str, csrf: str, base: str) -> str:
    """The buttons for what this agent may do with the case now."""
    def form(action: str, label: str, note: bool = False) -> str:
        field = ('<input name="resolution" placeholder="Resolution note" required maxlength="2000">' if note else "")
        return (
            f'<form method="post" action="{esc(base)}/cases/{case.id}/{action}" class="inline">'
            f'<input type="hidden" name="csrf" value="{esc(csrf)}">{field}'
            f'<button type="submit" name="do" value="{action}">{label}</button></form>'
        )

    if case.status == "queued":
        return form("accept", "Accept") + form("close", "Close", note=True)
    if case.status == "accepted" and case.agent == agent:
        return form("handback", "Hand back to the bot") + form("close", "Close", note=True)
    return ""


def case_page(case: CaseInfo, events: List[Event], *, agent: str, csrf: str, base: str,
              error: Optional[str] = None) -> str:
    """One case: context on top, the whole timeline, the reply box."""
    if case.status == "closed":
        how = "handed back to the bot" if case.outcome == "handed_back" else "resolved"
        state = (f'<span class="status closed">closed by {esc(case.closed_by)} ({how})</span>'
                 + (f" <q>{esc(case.resolution)}</q>" if case.resolution else ""))
    elif case.status == "accepted":
        state = f'<span class="status accepted">with {esc(case.agent)}</span>'
    else:
        state = '<span class="status queued">waiting for an agent</span>'
    problem = f'<p class="error" role="alert">{esc(error)}</p>' if error else ""
    can_reply = case.status == "accepted" and case.agent == agent
    reply = (
        f'<form id="reply" method="post" action="{esc(base)}/cases/{case.id}/reply">'
        f'<input type="hidden" name="csrf" value="{esc(csrf)}">'
        '<label for="reply-text">Reply to the customer</label>'
        '<textarea id="reply-text" name="text" rows="3" maxlength="4000" required></textarea>'
        '<button type="submit">Send</button><p class="error" id="reply-error" role="alert"></p></form>'
        if can_reply else
        '<p class="hint">Accept the case to reply.</p>' if case.status == "queued" else ""
    )
    body = (
        f'<section class="card case-head" data-status="{esc(case.status)}">'
        f"<h1>Case #{case.id}</h1><p>{state} · queue <b>{esc(case.queue)}</b> · opened {_when(case.created_at)}</p>"
        f'{problem}<div class="actions">{case_actions(case, agent, csrf, base)}</div></section>'
        f"{context_panel(case)}"
        '<section class="card"><h2>Conversation</h2>'
        f'<ol class="timeline" id="timeline">{timeline_items(events)}</ol>{reply}</section>'
    )
    return page(f"Case #{case.id}", body, base=base, kind="case", agent=agent, csrf=csrf, case_id=case.id)
