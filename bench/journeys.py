"""Journeys at load, with a worker killed: Threadline's durable worker beside Rasa's in-memory reminders.

**Threadline.** Two rasa replicas (``threadline.cluster.Cluster``), each
running a journey worker, on PostgreSQL (``DATABASE_URL``; a schema of the
run's own, dropped at the end) or, without it, SQLite (one worker). The
platform is a local recorder. ``--journeys`` customers, each known on
WhatsApp, each start ``bench/journeys/bench_follow_up.yml`` (a message now,
another 20 s after it), the starts spread evenly over ``--spread`` seconds.
At ``--kill-at`` seconds one replica is killed with SIGKILL, and started
again 10 s later. Reported: provider calls (WhatsApp requests) against
unique send-log rows (none missing, none doubled), rows left in doubt by the
kill, and how late steps fired after their due time (p50, p95, max, and how
many were more than 2 s late, the target).

**Stock Rasa** (the component journeys replace): the same number of
reminders (``ReminderScheduled``, scheduled through Rasa's own HTTP API with
``execute_side_effects``), due over the same spread, in one stock rasa
process (``rest``, ``RedisTrackerStore``) killed with SIGKILL at the same
moment and started again. Rasa keeps reminders in its in-process scheduler,
so every reminder not yet fired at the kill is lost.

    PYTHONPATH=. DATABASE_URL=postgresql://... .venv/bin/python bench/journeys.py [--journeys 1000] [--spread 60]

Prints figures; always exits 0.
"""
import argparse
import asyncio
import datetime as dt
import os
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import load  # noqa: E402
from bench.stopping import on_signals_exit  # noqa: E402

TOKEN = "bench-rasa-token"
JOURNEY = "bench_follow_up"


def percentile(values: List[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    return load.percentile(values, fraction)


def _fresh_schema(base_url: Optional[str]) -> Optional[str]:
    """A PostgreSQL schema of this run's own; the URL that uses it."""
    if not base_url or not base_url.startswith("postgres"):
        return None
    import sqlalchemy

    schema = f"bench_journeys_{uuid.uuid4().hex[:10]}"
    engine = sqlalchemy.create_engine(base_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    engine.dispose()
    separator = "&" if "?" in base_url else "?"
    return f"{base_url}{separator}options=-csearch_path%3D{schema}", schema


def _drop_schema(base_url: str, schema: str) -> None:
    import sqlalchemy

    engine = sqlalchemy.create_engine(base_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    engine.dispose()


def _use(env: Dict[str, str]) -> None:
    """Point this process's settings (Redis, database) at the stack's."""
    os.environ.update(env)
    from threadline import settings
    from threadline.db import reset_engine

    settings.reload()
    reset_engine()


def threadline_run(journeys: int, spread: float, kill_at: float, database_url: Optional[str]) -> Dict[str, object]:
    """Start the cluster, the journeys and the fault; return the figures."""
    work = Path(tempfile.mkdtemp(prefix="threadline-bench-journeys-"))
    env = {"JOURNEY_WORKER": "on", "JOURNEYS_DIR": str(ROOT / "bench" / "journeys"), "JOURNEY_QUIET_HOURS": "off",
           "JOURNEY_FREQUENCY_CAP": "off", "JOURNEY_POLL_SECONDS": "0.2", "JOURNEY_LEASE_SECONDS": "10",
           "JOURNEY_BATCH": "20", "EVENT_STREAM": "off"}
    if database_url:
        env["DATABASE_URL"] = database_url
    with load.cluster_running(work / "cluster", 2, env) as (cluster, recorder):
        _use({**env, "THREADLINE_VAR_DIR": str(work / "cluster"), **{k: v for k, v in cluster.env.items()
                                                                     if k in ("REDIS_URL", "DATABASE_URL")}})
        from threadline import identity
        from threadline.journeys import service

        service.forget_definitions()
        customers = []
        for index in range(journeys):
            wa_id = f"1415{index:07d}"
            customers.append((identity.resolve("whatsapp", wa_id, phone=wa_id, verified_phone=True).customer_id, wa_id))
        began = time.monotonic()
        killed = restarted = False
        for index, (customer, _) in enumerate(customers):
            target = began + spread * index / journeys
            while time.monotonic() < target:
                time.sleep(min(0.05, target - time.monotonic()))
            service.start(JOURNEY, customer, {"case": str(index), "vehicle": "Golf"})
            if not killed and time.monotonic() - began >= kill_at:
                cluster.kill_replica(0)
                killed, killed_at = True, time.monotonic()
            if killed and not restarted and time.monotonic() - killed_at >= 10:
                cluster.start_replica(0)
                restarted = True
        if not killed:
            cluster.kill_replica(0)
            killed_at = time.monotonic()
        if not restarted:
            time.sleep(max(0.0, 10 - (time.monotonic() - killed_at)))
            cluster.start_replica(0)
        deadline = time.monotonic() + 20 + 60
        figures = {}
        while time.monotonic() < deadline:
            figures = _threadline_figures(recorder, journeys)
            if figures["steps_done"] == 2 * journeys:
                break
            time.sleep(2)
        figures["database"] = "PostgreSQL" if database_url else "SQLite"
        return figures


def _threadline_figures(recorder, journeys: int) -> Dict[str, object]:
    from sqlalchemy import select

    from threadline.db.models import JourneySend, JourneyStep
    from threadline.db.session import session_scope

    calls = [r for r in recorder.requests if r.path.endswith("/messages")]
    per_step = Counter()
    for request in calls:
        body = request.json or {}
        text = str(body)
        step = "ask" if "We closed your case" in text else "nudge" if "still needs its service" in text else "?"
        per_step[(body.get("to"), step)] += 1
    with session_scope() as session:
        sends = session.execute(select(JourneySend.state, JourneySend.created_at, JourneySend.step_index,
                                       JourneySend.instance_id)).all()
        steps = {(s.instance_id, s.step_index): s for s in session.scalars(select(JourneyStep)).all()}
    late = []
    for state, created, index, instance in sends:
        step = steps.get((instance, index))
        if step is not None and state == "sent":
            late.append((created - step.due_at).total_seconds())
    states = Counter(state for state, *_ in sends)
    return {
        "journeys": journeys,
        "provider_calls": len(calls),
        "unique_provider_calls": len(per_step),
        "doubled": sum(1 for n in per_step.values() if n > 1),
        "send_log_rows": len(sends),
        "rows_sent": states.get("sent", 0),
        "rows_in_doubt": states.get("in_doubt", 0),
        "rows_other": sum(n for s, n in states.items() if s not in ("sent", "in_doubt")),
        "steps_done": sum(1 for s in steps.values() if s.state == "done"),
        "late_p50": percentile(late, 0.5), "late_p95": percentile(late, 0.95),
        "late_max": max(late) if late else float("nan"),
        "late_over_2s": sum(1 for x in late if x > 2.0),
    }


async def _schedule_reminders(base: str, count: int, spread: float, began_wall: float) -> List[str]:
    senders = [f"bench-stock-{i}" for i in range(count)]
    async with aiohttp.ClientSession() as session:
        semaphore = asyncio.Semaphore(16)

        async def one(index: int, sender: str) -> None:
            due = dt.datetime.fromtimestamp(began_wall + 15 + spread * index / count)
            event = {"event": "reminder", "intent": "greet", "date_time": due.isoformat(), "name": f"r{index}",
                     "kill_on_user_msg": False, "timestamp": time.time()}
            async with semaphore:
                async with session.post(f"{base}/conversations/{sender}/tracker/events",
                                        params={"token": TOKEN, "execute_side_effects": "true"},
                                        json=[event]) as reply:
                    if reply.status != 200:
                        raise RuntimeError(f"scheduling a reminder: {reply.status} {await reply.text()}")

        await asyncio.gather(*(one(i, s) for i, s in enumerate(senders)))
    return senders


async def _fired(base: str, senders: List[str]) -> List[float]:
    """Lateness of every reminder that fired (seconds after its due time)."""
    late = []
    async with aiohttp.ClientSession() as session:
        semaphore = asyncio.Semaphore(16)

        async def one(sender: str) -> None:
            async with semaphore:
                async with session.get(f"{base}/conversations/{sender}/tracker", params={"token": TOKEN}) as reply:
                    tracker = await reply.json()
            due = None
            for event in tracker.get("events") or []:
                if event.get("event") == "reminder":
                    due = dt.datetime.fromisoformat(event["date_time"]).timestamp()
                if event.get("event") == "user" and str(event.get("text", "")).startswith("EXTERNAL") and due:
                    late.append(event["timestamp"] - due)
                    return

        await asyncio.gather(*(one(s) for s in senders))
    return late


def stock_run(count: int, spread: float, kill_at: float) -> Dict[str, object]:
    """Rasa's reminders in one stock process, killed at the same moment."""
    load.SECRETS["RASA_AUTH_TOKEN"] = TOKEN
    work = Path(tempfile.mkdtemp(prefix="threadline-bench-reminders-"))
    with load.stock_running(work / "stock") as stock:
        base = stock.rasa_url
        began_wall = time.time()
        senders = asyncio.run(_schedule_reminders(base, count, spread, began_wall))
        time.sleep(max(0.0, began_wall + 15 + kill_at - time.time()))
        _kill_rasa(stock)
        time.sleep(10)
        _restart_rasa(stock)
        time.sleep(max(0.0, began_wall + 15 + spread + 10 - time.time()))
        late = asyncio.run(_fired(base, senders))
    return {"reminders": count, "fired": len(late), "lost": count - len(late),
            "late_p50": percentile(late, 0.5), "late_p95": percentile(late, 0.95),
            "late_max": max(late) if late else float("nan")}


def _kill_rasa(stack) -> None:
    import signal

    for proc in list(stack.processes):
        if len(proc.args) > 1 and str(proc.args[0]).endswith("rasa") and proc.args[1] == "run":
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            stack.processes.remove(proc)
            return
    raise RuntimeError("no rasa process to kill")


def _restart_rasa(stack) -> None:
    from threadline.stack import _wait_http

    proc, log = stack._spawn(stack.rasa_args(stack.endpoints_file), f"rasa-{stack.rasa_port}-restarted.log")
    _wait_http(f"{stack.rasa_url}{stack.ready_path}", 240, proc, log)


def main(argv: Optional[List[str]] = None) -> int:
    """Run both sides and print the figures."""
    on_signals_exit()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--journeys", type=int, default=1000)
    parser.add_argument("--spread", type=float, default=60.0)
    parser.add_argument("--kill-at", type=float, default=30.0)
    parser.add_argument("--section", choices=("all", "threadline", "stock"), default="all")
    args = parser.parse_args(argv)
    base_url = os.environ.get("DATABASE_URL")
    fresh = _fresh_schema(base_url)
    try:
        if args.section in ("all", "threadline"):
            figures = threadline_run(args.journeys, args.spread, args.kill_at, fresh[0] if fresh else None)
            print(f"Threadline journeys, 2 workers on {figures['database']}, one SIGKILLed at {args.kill_at:g} s:")
            for key, value in figures.items():
                print(f"  {key}: {value:.2f}" if isinstance(value, float) else f"  {key}: {value}")
        if args.section in ("all", "stock"):
            figures = stock_run(args.journeys, args.spread, args.kill_at)
            print(f"Stock Rasa reminders, one process, SIGKILLed at {args.kill_at:g} s:")
            for key, value in figures.items():
                print(f"  {key}: {value:.2f}" if isinstance(value, float) else f"  {key}: {value}")
    finally:
        if fresh:
            _drop_schema(base_url, fresh[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
