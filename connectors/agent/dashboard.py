"""The desk's analytics dashboard, for signed-in agents: KPIs by day and channel, charts, CSV.

    GET /webhooks/agent/dashboard[?start=YYYY-MM-DD&end=YYYY-MM-DD&channel=whatsapp]   the page
    GET /webhooks/agent/dashboard/data?...                                              the same as JSON
    GET /webhooks/agent/dashboard.csv?...                                               rows by day and channel

The page works without JavaScript (the tables are rendered here);
``static/dashboard.js`` draws the charts with Chart.js, vendored from npm as
one file (``static/vendor/chart.umd.js``, MIT), no build step. Definitions of
every KPI: ``threadline.analytics.kpis.DEFINITIONS`` (also on the page).
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from connectors.agent.views import esc, page
from connectors.base import run_sync
from threadline.analytics import kpis

CHANNELS = ("webchat", "whatsapp", "telegram", "twilio_voice", "jambonz")
SHOWN = [("sessions", "Sessions"), ("containment", "Containment"), ("handoff_rate", "Handoff rate"),
         ("channel_switch_success", "Channel-switch success"), ("zero_repeat_rate", "Zero-repeat rate"),
         ("fallback_rate", "Fallback rate"), ("first_response_ms", "First response (ms, median)"),
         ("resolution_seconds", "Resolution (s, median)"), ("csat", "CSAT"), ("switches", "Switches"),
         ("messages", "Messages"), ("handoff_cases", "Handoff cases"),
         ("time_to_accept_seconds", "Time to accept (s, median)"), ("journey_sends", "Journey sends")]
RATES = {"containment", "handoff_rate", "channel_switch_success", "zero_repeat_rate", "fallback_rate", "csat",
         "handoffs_accepted"}


def _value(key: str, value: Any) -> str:
    if value is None:
        return "–"
    if key in RATES:
        return f"{value * 100:.1f}%"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _filters(request: Request):
    from connectors.agent.channel import Refusal

    channel = request.args.get("channel") or None
    if channel and channel not in CHANNELS:
        raise Refusal(400, f"unknown channel {channel!r} (one of {', '.join(CHANNELS)})")
    try:
        start, end = kpis.parse_range(request.args.get("start"), request.args.get("end"))
    except ValueError as error:
        raise Refusal(400, str(error)) from None
    return start, end, channel


def render(report: Dict[str, Any], base: str, channel: Optional[str]) -> str:
    """The dashboard's body: filters, totals, KPI definitions, rows by day, CSV link."""
    options = "".join(f'<option value="{c}"{" selected" if c == channel else ""}>{c}</option>' for c in CHANNELS)
    query = f"start={report['start']}&end={report['end']}" + (f"&channel={channel}" if channel else "")
    totals: List[Dict[str, Any]] = report["totals"]
    head = "".join(f"<th>{esc(label)}</th>" for _, label in SHOWN)
    total_rows = "".join(
        f'<tr data-channel="{esc(t["channel"])}"><th>{esc(t["channel"])}</th>'
        + "".join(f'<td data-kpi="{key}">{_value(key, t.get(key))}</td>' for key, _ in SHOWN) + "</tr>"
        for t in totals)
    day_rows = "".join(
        f'<tr><td>{esc(r["day"])}</td><td>{esc(r["channel"])}</td>'
        + "".join(f"<td>{_value(key, r.get(key))}</td>" for key, _ in SHOWN) + "</tr>"
        for r in report["rows"])
    definitions = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in report["definitions"].items())
    return (
        '<section class="dashboard"><h1>Dashboard</h1>'
        f'<form method="get" action="{esc(base)}/dashboard" class="filters">'
        f'<label>From <input type="date" name="start" value="{esc(report["start"])}"></label>'
        f'<label>To <input type="date" name="end" value="{esc(report["end"])}"></label>'
        f'<label>Channel <select name="channel"><option value="">all</option>{options}</select></label>'
        '<button type="submit">Show</button>'
        f'<a class="csv" href="{esc(base)}/dashboard.csv?{esc(query)}" download>Export CSV</a></form>'
        f'<div class="charts" data-source="{esc(base)}/dashboard/data?{esc(query)}">'
        '<canvas id="chart-rates" aria-label="KPI rates by day" role="img"></canvas>'
        '<canvas id="chart-volume" aria-label="Sessions and switches by day" role="img"></canvas></div>'
        f'<h2>Totals, {esc(report["start"])} to {esc(report["end"])}</h2>'
        f'<table class="kpis" id="totals"><thead><tr><th>Channel</th>{head}</tr></thead><tbody>{total_rows}</tbody></table>'
        f'<h2>By day</h2><table class="kpis" id="days"><thead><tr><th>Day</th><th>Channel</th>{head}</tr></thead>'
        f"<tbody>{day_rows}</tbody></table>"
        f'<h2>Definitions</h2><dl class="definitions">{definitions}</dl></section>'
    )


def register(blueprint: Blueprint, desk: Any) -> None:
    """Add the dashboard's routes to the desk's blueprint."""

    @blueprint.route("/dashboard", methods=["GET"])
    @desk.guarded
    async def dashboard(request: Request) -> HTTPResponse:
        session = await desk.session(request)
        start, end, channel = _filters(request)
        report = await run_sync(kpis.report, start, end, channel)
        base = desk.base(request)
        return response.html(page("Dashboard", render(report, base, channel), base=base, kind="dashboard",
                                  agent=session.agent, csrf=session.csrf,
                                  scripts=["vendor/chart.umd.js", "dashboard.js"]))

    @blueprint.route("/dashboard/data", methods=["GET"])
    @desk.guarded
    async def dashboard_data(request: Request) -> HTTPResponse:
        await desk.session(request)
        start, end, channel = _filters(request)
        return response.json(await run_sync(kpis.report, start, end, channel))

    @blueprint.route("/dashboard.csv", methods=["GET"])
    @desk.guarded
    async def dashboard_csv(request: Request) -> HTTPResponse:
        await desk.session(request)
        start, end, channel = _filters(request)
        report = await run_sync(kpis.report, start, end, channel)
        name = f"threadline-kpis-{start.isoformat()}-{end.isoformat()}.csv"
        return response.text(kpis.to_csv(report["rows"]), content_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": f'attachment; filename="{name}"'})
