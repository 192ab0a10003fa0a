"""The business database: customers, orders, appointments, handoff cases, feedback.

Fulfillment (actions/) writes it and the agent desk reads it; both reach it
only through this package (``queries`` for the business, ``cases`` for
handoff cases). ``DATABASE_URL`` selects it (SQLite under var/ by default,
PostgreSQL when set). Nothing connects at import time, and nothing creates the
schema but ``python -m threadline.db init``.
"""
from threadline.db.session import SchemaMissing, ensure_ready, get_engine, init_schema, reset_engine, session_scope

__all__ = ["SchemaMissing", "ensure_ready", "get_engine", "init_schema", "reset_engine", "session_scope"]
