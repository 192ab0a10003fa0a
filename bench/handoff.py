"""Benchmark: from a customer's WhatsApp message to the agent desk, on the real stack.

Starts what ``make run`` starts (trained model, action server, rasa server with
every channel and the agent desk) under a throwaway var/ directory, with a
local recorder standing in for Meta's API, signs an agent in and keeps the
desk's live event stream open, the way the desk page does. Measured, each
from just before the signed webhook request:

1. escalation -> desk: a new customer asks for a person; until (a) the case's
   "opened" event reaches the desk's stream and (b) the queue rows the page
   then fetches list the case (what the agent sees);
2. customer message -> desk while an agent owns the conversation (bot paused):
   until the message reaches the case page's stream;
3. the frustration check's cost per customer message: one call of
   ``action_validate_slot_mappings`` on the action server.

Prints p50/p95/max against the 1 s target; always exits 0.

    PYTHONPATH=. .venv/bin/python bench/handoff.py
"""
from stopping import on_signals_exit  # bench/ is the script directory (first on sys.path)
import os
import statistics
import sys
import tempfile
import time
import uuid

ESCALATIONS = 20
MESSAGES = 20
CHECKS = 200
WARMUP = 3
TARGET_MS = 1000.0
SECRETS = {
    "WHATSAPP_VERIFY_TOKEN": "bench-verify",
    "WHATSAPP_APP_SECRET": "bench-app-secret",
    "WHATSAPP_ACCESS_TOKEN": "bench-access-token",
    "WHATSAPP_PHONE_NUMBER_ID": "106540352242922",
    "TELEGRAM_BOT_TOKEN": "123456:BENCH",
    "TELEGRAM_SECRET_TOKEN": "bench-telegram",
    "TWILIO_AUTH_TOKEN": "bench-twilio",
    "JAMBONZ_WEBHOOK_SECRET": "bench-jambonz",
    "AGENT_TOKENS": "alice:bench-alice-token",
}


def _percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def _report(label, values_ms, target_ms=None):
    verdict = ""
    if target_ms is not None:
        verdict = "  OK" if max(values_ms) <= target_ms else f"  OVER the {target_ms:.0f} ms target"
    print(f"  {label:<48} p50 {statistics.median(values_ms):7.1f} ms   "
          f"p95 {_percentile(values_ms, 0.95):7.1f} ms   max {max(values_ms):7.1f} ms{verdict}")


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Customer:
    """A WhatsApp customer posting signed deliveries to the real webhook."""

    def __init__(self, stack, index):
        self.url = f"{stack.rasa_url}/webhooks/whatsapp/webhook"
        self.wa_id = f"1650254{index:04d}"
        self.name = f"Bench {uuid.uuid4().hex[:8]}"

    def say(self, text):
        import requests

        from tests.support import payloads as p

        payload = p.whatsapp_text_payload(self.wa_id, text, f"wamid.bench.{uuid.uuid4().hex}", name=self.name)
        raw, headers = p.signed_whatsapp_request(payload, SECRETS["WHATSAPP_APP_SECRET"])
        answer = requests.post(self.url, data=raw, headers=headers, timeout=60)
        if answer.status_code != 200:
            raise RuntimeError(f"webhook answered {answer.status_code}: {answer.text}")


def bench_escalations(stack, desk, alice, customers):
    to_event, to_rows, webhook = [], [], []
    with desk.stream(alice) as events:
        for index, customer in enumerate(customers):
            started = time.time()
            customer.say("I want to talk to a person")
            returned = time.time()
            data, at = events.next("case", timeout=10,
                                   where=lambda d, name=customer.name: d["case"].get("customer_name") == name)
            rows = alice.get(f"{desk.base}/queue", timeout=10).text
            listed = time.time()
            if customer.name not in rows:
                raise RuntimeError("the queue does not list the new case")
            customer.case_id = data["case"]["id"]
            if index >= WARMUP:
                to_event.append((at - started) * 1000)
                to_rows.append((listed - started) * 1000)
                webhook.append((returned - started) * 1000)
    print(f"Escalation -> desk ({len(to_event)} customers, after {WARMUP} warm-up):")
    _report("webhook request answered (bot turn done)", webhook)
    _report("case event on the desk's stream", to_event, TARGET_MS)
    _report("case listed in the queue the page fetches", to_rows, TARGET_MS)


def bench_paused_messages(desk, alice, customer):
    answer = desk.post(alice, customer.case_id, "accept")
    if answer.status_code != 200:
        raise RuntimeError(f"accept failed: {answer.text}")
    latencies = []
    with desk.stream(alice, customer.case_id) as events:
        for index in range(MESSAGES + WARMUP):
            text = f"Still there? ({index})"
            started = time.time()
            customer.say(text)
            _, at = events.next("message", timeout=10, where=lambda d, t=text: d["event"].get("text") == t)
            if index >= WARMUP:
                latencies.append((at - started) * 1000)
    print(f"Customer message -> desk while the agent owns the conversation ({MESSAGES} messages):")
    _report("message event on the case page's stream", latencies, TARGET_MS)


def bench_frustration_check(stack):
    import requests

    tracker = {
        "sender_id": "c_bench_check", "slots": {}, "paused": False, "followup_action": None,
        "latest_action_name": "action_listen", "active_loop": {}, "latest_event_time": time.time(),
        "latest_message": {"text": "the router still does not work", "intent": {"name": "deny"},
                           "entities": [], "metadata": {}},
        "events": [{"event": "user", "text": f"message {i}: it still does not work"} for i in range(10)],
    }
    body = {"next_action": "action_validate_slot_mappings", "sender_id": "c_bench_check", "tracker": tracker,
            "domain": {}, "version": "3.6.21"}
    session = requests.Session()
    timings = []
    for index in range(CHECKS + WARMUP):
        started = time.perf_counter()
        answer = session.post(f"{stack.action_url}/webhook", json=body, timeout=10)
        elapsed = (time.perf_counter() - started) * 1000
        if answer.status_code != 200:
            raise RuntimeError(f"action server answered {answer.status_code}: {answer.text}")
        if index >= WARMUP:
            timings.append(elapsed)
    print(f"Frustration check per customer message ({CHECKS} calls, 10 earlier messages):")
    _report("action_validate_slot_mappings round trip", timings)


def main() -> int:
    on_signals_exit()
    os.environ["THREADLINE_VAR_DIR"] = tempfile.mkdtemp(prefix="threadline-bench-handoff-")
    os.environ.pop("REDIS_URL", None)
    os.environ.pop("DATABASE_URL", None)
    from tests.support.desk import DeskClient
    from tests.support.recorder import Recorder
    from threadline.stack import Stack

    with Recorder() as api:
        env = dict(SECRETS, WHATSAPP_API_BASE=api.url + "/graph", TELEGRAM_API_BASE=api.url + "/telegram")
        print("starting the stack (model, action server, rasa server)...", flush=True)
        stack = Stack(rasa_port=_free_port(), action_port=_free_port(), env=env)
        try:
            stack.start()
            desk = DeskClient(f"{stack.rasa_url}/webhooks/agent")
            alice = desk.sign_in("alice", SECRETS["AGENT_TOKENS"].split(":", 1)[1])
            customers = [Customer(stack, i) for i in range(ESCALATIONS + WARMUP)]
            bench_escalations(stack, desk, alice, customers)
            bench_paused_messages(desk, alice, customers[-1])
            bench_frustration_check(stack)
        except Exception as exc:  # report, never fail the make target
            print(f"benchmark failed: {exc}", file=sys.stderr)
        finally:
            stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
