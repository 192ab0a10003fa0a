"""The business database: customers, orders, appointments, handoffs, feedback.

Fulfillment (actions/) writes it and the agent desk reads it; both reach it
only through this package. ``DATABASE_URL`` selects it (SQLite under var/ by
default, PostgreSQL when set). Nothing connects at import time.
"""
from threadline.db.session import ensure_ready, session_scope, get_engine, reset_engine

__all__ = ["ensure_ready", "session_scope", "get_engine", "reset_engine"]
