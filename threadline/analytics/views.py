"""SQL views over the analytics tables, for BI tools (Metabase, Superset, Grafana) reading the database directly.

Created by ``python -m threadline.db init`` (``make run`` runs it). Each view
counts by UTC day and channel; a KPI is one column divided by another, as
``threadline.analytics.kpis.DEFINITIONS`` says (the dashboard computes the
same numbers from the same tables):

* ``analytics_daily_sessions``: day, channel, sessions, contained, handed_off
  (containment = contained / sessions, handoff rate = handed_off / sessions)
* ``analytics_daily_turns``: day, channel, messages, fallbacks
  (fallback rate = fallbacks / messages)
* ``analytics_daily_switches``: day, channel (switched to), switches, successful,
  zero_repeat (channel-switch success = successful / switches, zero-repeat
  rate = zero_repeat / switches)
"""
from __future__ import annotations

from typing import Dict

from sqlalchemy.engine import Engine

VIEWS: Dict[str, str] = {
    "analytics_daily_sessions": (
        "SELECT date(first_turn_at) AS day, channel, COUNT(*) AS sessions, "
        "SUM(CASE WHEN NOT handoff AND NOT contact_back_24h THEN 1 ELSE 0 END) AS contained, "
        "SUM(CASE WHEN handoff THEN 1 ELSE 0 END) AS handed_off "
        "FROM analytics_sessions WHERE turns > 0 GROUP BY date(first_turn_at), channel"
    ),
    "analytics_daily_turns": (
        "SELECT date(at) AS day, channel, COUNT(*) AS messages, "
        "SUM(CASE WHEN fallback THEN 1 ELSE 0 END) AS fallbacks "
        "FROM analytics_turns GROUP BY date(at), channel"
    ),
    "analytics_daily_switches": (
        "SELECT date(at) AS day, to_channel AS channel, COUNT(*) AS switches, "
        "SUM(CASE WHEN NOT reasked AND (resumed OR NOT task_open) THEN 1 ELSE 0 END) AS successful, "
        "SUM(CASE WHEN NOT reasked THEN 1 ELSE 0 END) AS zero_repeat "
        "FROM analytics_switches GROUP BY date(at), to_channel"
    ),
}


def create(engine: Engine) -> None:
    """Create (or, on PostgreSQL, replace) every view."""
    postgres = engine.dialect.name == "postgresql"
    with engine.begin() as conn:
        for name, query in VIEWS.items():
            verb = "CREATE OR REPLACE VIEW" if postgres else "CREATE VIEW IF NOT EXISTS"
            conn.exec_driver_sql(f"{verb} {name} AS {query}")
