"""Benchmark: webhook round trips per channel on the real stack, then the connector pipeline alone.

1. Channels vs the stock ``rest`` channel (the headline). ONE real stack
   (``threadline.stack.Stack``: action server, rasa server with
   models/threadline.tar.gz, embedded Redis and SQLite in a throwaway var/
   directory) with every channel on and the platform APIs pointed at a local
   recorder (tests/support/recorder.py), so all channels share the same model,
   action server and Redis. Each channel runs the same conversation
   (``CONVERSATION``: answers only, no business-database writes), every
   conversation from a fresh customer, with 1 and 20 concurrent senders::

     rest      POST /webhooks/rest/webhook (Rasa's own channel): the reply is the response
     webchat   POST /webhooks/webchat/webhook (anonymous visitor): the reply is the response
     whatsapp  signed delivery to /webhooks/whatsapp/webhook; the round trip ends when
               the recorder has received the last outbound ``/messages`` request of that turn
     telegram  update with the secret-token header; ends when the recorder has the last
               ``sendMessage`` of that turn

   WhatsApp and Telegram answer the webhook only after sending (the pipeline
   awaits the bot), so the webhook response normally comes last; the script
   does not rely on that: it matches every recorded outbound request to its turn
   (by recipient and time) and ends the turn at whichever came later, and
   counts a turn with no outbound request as an error. Payloads are built and
   signed before the clock starts. The HTTP client (aiohttp) runs in a separate
   process, so it shares neither an event loop nor a GIL with the recorder
   (main process) or the servers (their own processes); all of them share the
   machine's cores. Latency percentiles are over timed turns after a warm-up;
   msg/s is timed turns over the wall time of the runs. Cells are interleaved:
   each (channel, senders) cell is split into ``--rounds`` runs, and the
   channel order rotates per round, so background load drifts over all
   channels alike. Target: a channel adds at most 5 ms p95 over ``rest`` at the
   same concurrency (that covers everything a connector does: body limit,
   signature or secret check, parse, dedupe, identity, rendering and, for
   WhatsApp and Telegram, the outbound HTTP call to the platform stand-in).

2. The connector pipeline in process, with an echo agent instead of Rasa. A
   signed WhatsApp delivery (and a Telegram update) goes through the real
   webhook (Rasa's ``configure_app``, random port): size limit, signature,
   parse, dedupe, identity, ``UserMessage``; a stand-in agent echoes it and the
   reply is sent to a local recorder standing in for the platform API.
   Measured: per-message latency (webhook request until the reply has been
   sent) one customer at a time, and throughput with many customers at once;
   then the Markdown renderers and the splitter on a long answer. Uses Redis
   (``REDIS_URL``, else the embedded server) under a throwaway key prefix
   deleted afterwards. Client, server and API stand-in share one process (and
   one GIL), so the throughput figure is a floor.

Prints figures; always exits 0.

    PYTHONPATH=. .venv/bin/python bench/connectors.py [--turns 300] [--rounds 3] [--section all|stack|echo]
"""
import argparse
import asyncio
import gc
import itertools
import json
import math
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import traceback
import uuid
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

# Run as a script, this file's directory comes first on sys.path and its name
# would shadow the ``connectors`` package; look in the project root instead.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))
from bench.stopping import on_signals_exit  # noqa: E402
sys.modules.pop("connectors", None)

# ------------------------------------------------------------------ section 1

CHANNELS = ("rest", "webchat", "whatsapp", "telegram")
CONCURRENCY = (1, 20)
# Answers without business-database writes, so every run does the same work.
CONVERSATION = ("hi", "what are your opening hours", "thanks", "bye")
TARGET_MS = 5.0
WEBHOOK_PATHS = {
    "rest": "/webhooks/rest/webhook",
    "webchat": "/webhooks/webchat/webhook",
    "whatsapp": "/webhooks/whatsapp/webhook",
    "telegram": "/webhooks/telegram/webhook",
}
# Where the platform stand-in is mounted (``*_API_BASE`` = recorder URL + this).
API_MOUNTS = {"whatsapp": "/graph", "telegram": "/telegram"}

_update_ids = itertools.count(1_000_000)  # Telegram update ids, unique per client process


def _percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def _request_for(channel, customer, text, secrets):
    """(body bytes, headers) of one inbound message from ``customer`` on ``channel``."""
    from tests.support import payloads as p

    if channel in ("rest", "webchat"):
        return json.dumps({"sender": customer, "message": text}).encode(), {"Content-Type": "application/json"}
    if channel == "whatsapp":
        payload = p.whatsapp_text_payload(customer, text, f"wamid.bench.{uuid.uuid4().hex}",
                                          phone_number_id=secrets["WHATSAPP_PHONE_NUMBER_ID"])
        return p.signed_whatsapp_request(payload, secrets["WHATSAPP_APP_SECRET"])
    if channel == "telegram":
        update = p.telegram_text_update(int(customer), text, next(_update_ids))
        return json.dumps(update).encode(), p.telegram_headers(secrets["TELEGRAM_SECRET_TOKEN"])
    raise ValueError(channel)


def _customer(channel, number):
    """A fresh customer's address on ``channel`` (``number`` is unique per run)."""
    if channel == "whatsapp":
        return f"1650{2_000_000 + number}"  # a valid US number, as WhatsApp writes a wa_id
    if channel == "telegram":
        return str(700_000_000 + number)
    return f"bench-{channel}-{number:08d}-{uuid.uuid4().hex[:12]}"  # webchat wants 16+ characters


def run_chunk(channel, url, senders, conversations, first_customer, secrets):
    """Client process: ``senders`` concurrent senders, each holding ``conversations``
    whole conversations in turn, each with a fresh customer.

    Returns ``{"turns": [...], "started": wall, "ended": wall}``; a turn is
    ``{"customer", "sent" (wall), "answered" (wall), "ms", "replies", "error"}``.
    """
    import aiohttp

    async def sender(session, index, turns):
        for conversation in range(conversations):
            customer = _customer(channel, first_customer + index * conversations + conversation)
            if channel == "webchat":  # a visitor first gets its token, as the widget does (not timed)
                async with session.post(url.rsplit("/", 1)[0] + "/session") as issued:
                    customer = (await issued.json())["sender"]
            for text in CONVERSATION:
                body, headers = _request_for(channel, customer, text, secrets)
                turn = {"customer": customer, "text": text, "replies": None, "error": None}
                sent_clock = time.perf_counter()
                turn["sent"] = time.time()
                try:
                    async with session.post(url, data=body, headers=headers) as response:
                        raw = await response.read()
                        status = response.status
                except Exception as exc:  # a refused/timed-out request is a result, not a crash
                    status, raw = None, b""
                    turn["error"] = f"{type(exc).__name__}: {exc}"
                turn["ms"] = (time.perf_counter() - sent_clock) * 1000
                turn["answered"] = time.time()
                if turn["error"] is None and status != 200:
                    turn["error"] = f"HTTP {status}: {raw[:200]!r}"
                if turn["error"] is None and channel in ("rest", "webchat"):
                    replies = json.loads(raw)
                    turn["replies"] = len(replies)
                    if not replies:
                        turn["error"] = "empty reply"
                turns.append(turn)

    async def main():
        turns = []
        connector = aiohttp.TCPConnector(limit=0)  # one keep-alive connection per sender
        timeout = aiohttp.ClientTimeout(total=120)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            started = time.time()
            await asyncio.gather(*(sender(session, i, turns) for i in range(senders)))
            ended = time.time()
        return {"turns": turns, "started": started, "ended": ended}

    return asyncio.run(main())


def _outbound_recipient(channel, request):
    """The customer an outbound platform request is addressed to (or None)."""
    body = request.json if isinstance(request.json, dict) else {}
    if channel == "whatsapp" and request.path.endswith("/messages"):
        return str(body.get("to") or body.get("recipient") or "")
    if channel == "telegram" and request.path.endswith("/sendMessage"):
        return str(body.get("chat_id") or "")
    return None


def _close_turns(channel, result, recorded):
    """Give each WhatsApp/Telegram turn its outbound requests; end it at the last one.

    A customer's turns are sequential, so a request belongs to the turn sent
    last before it arrived.
    """
    by_customer = {}
    for request in recorded:
        recipient = _outbound_recipient(channel, request)
        if recipient:
            by_customer.setdefault(recipient, []).append(request.time)
    turns_of = {}
    for turn in result["turns"]:
        turns_of.setdefault(turn["customer"], []).append(turn)
    for customer, turns in turns_of.items():
        turns.sort(key=lambda t: t["sent"])
        arrivals = sorted(by_customer.get(customer, []))
        for index, turn in enumerate(turns):
            until = turns[index + 1]["sent"] if index + 1 < len(turns) else float("inf")
            mine = [t for t in arrivals if turn["sent"] <= t < until]
            turn["replies"] = len(mine)
            if turn["error"] is None and not mine:
                turn["error"] = "no outbound request recorded"
            if mine and mine[-1] > turn["answered"]:
                late = (mine[-1] - turn["answered"]) * 1000
                turn["ms"] += late
                turn["late_ms"] = late
                result["ended"] = max(result["ended"], mine[-1])


class StackBench:
    """One stack, one recorder, one client process; runs chunks and collects turns."""

    def __init__(self, stack, recorder, pool, secrets):
        self.stack, self.recorder, self.pool, self.secrets = stack, recorder, pool, secrets
        self.next_customer = 0

    def run(self, channel, senders, conversations):
        first = self.next_customer
        self.next_customer += senders * conversations
        expected = senders * conversations * len(CONVERSATION)
        self.recorder.clear()
        url = self.stack.rasa_url + WEBHOOK_PATHS[channel]
        result = self.pool.submit(run_chunk, channel, url, senders, conversations, first, self.secrets).result()
        if channel in API_MOUNTS:
            customers = {t["customer"] for t in result["turns"]}

            def every_turn_answered(requests):
                return len({_outbound_recipient(channel, r) for r in requests} & customers) >= len(customers)

            try:  # normally already true: the webhook answers after sending
                self.recorder.wait_for(every_turn_answered, timeout=10)
            except AssertionError:
                pass  # the turns without a request are counted as errors below
            time.sleep(0.05)
            _close_turns(channel, result, list(self.recorder.requests))
        assert len(result["turns"]) == expected, (len(result["turns"]), expected)
        return result


def _summary(results):
    turns = [t for r in results for t in r["turns"]]
    good = [t for t in turns if t["error"] is None]
    latencies = [t["ms"] for t in good]
    wall = sum(r["ended"] - r["started"] for r in results)
    replies = [t["replies"] for t in good if t["replies"] is not None]
    errors = [t["error"] for t in turns if t["error"] is not None]
    return {
        "n": len(latencies),
        "errors": errors,
        "p50": statistics.median(latencies) if latencies else float("nan"),
        "p95": _percentile(latencies, 0.95) if latencies else float("nan"),
        "rate": len(latencies) / wall if wall > 0 else float("nan"),
        "replies": statistics.mean(replies) if replies else float("nan"),
        "late": sum(1 for t in good if t.get("late_ms")),
        # p95 of each interleaved run alone: how much p95 moves from run to run.
        "run_p95": [_percentile(ms, 0.95) for ms in
                    ([t["ms"] for t in r["turns"] if t["error"] is None] for r in results) if ms],
    }


def bench_channels(turns, rounds, warmup=True):
    """Section 1: every channel vs the stock ``rest`` channel on one real stack."""
    from tests.conftest import TEST_SECRETS, free_port
    from tests.support.recorder import Recorder
    from threadline.stack import Stack

    var_dir = tempfile.mkdtemp(prefix="threadline-bench-channels-")
    secrets = dict(TEST_SECRETS)
    results = {}
    try:
        with Recorder() as recorder:
            env = dict(secrets)
            env.update(
                THREADLINE_VAR_DIR=var_dir,
                WHATSAPP_API_BASE=recorder.url + API_MOUNTS["whatsapp"],
                TELEGRAM_API_BASE=recorder.url + API_MOUNTS["telegram"],
            )
            print("starting the stack (action server, rasa server, embedded Redis) ...", flush=True)
            from bench.stock import credentials_with_rest

            stack = Stack(rasa_port=free_port(), action_port=free_port(), env=env,
                          credentials=credentials_with_rest(var_dir))
            started = time.perf_counter()
            with stack, ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                missing = [c for c in ("connectors.whatsapp.WhatsAppInput", "connectors.telegram.TelegramInput",
                                       "connectors.webchat.WebchatInput", "rest") if c not in stack.channels_on]
                if missing:
                    raise RuntimeError(f"channels off: {missing} ({stack.channels_off})")
                print(f"stack up in {time.perf_counter() - started:.0f} s; warming up ...", flush=True)
                bench = StackBench(stack, recorder, pool, secrets)
                for channel in CHANNELS if warmup else ():
                    # First messages load lazily; also spins up thread pools and connections.
                    warm = [bench.run(channel, 1, 2), bench.run(channel, max(CONCURRENCY), 1)]
                    problems = [t["error"] for r in warm for t in r["turns"] if t["error"]]
                    if problems:
                        print(f"  warm-up {channel}: {len(problems)} error(s), first: {problems[0]}", flush=True)
                for senders in CONCURRENCY:
                    conversations = max(1, math.ceil(turns / (senders * len(CONVERSATION) * rounds)))
                    for round_index in range(rounds):
                        shift = round_index % len(CHANNELS)
                        for channel in CHANNELS[shift:] + CHANNELS[:shift]:
                            results.setdefault((channel, senders), []).append(
                                bench.run(channel, senders, conversations))
                    done = {c: _summary(results[(c, senders)]) for c in CHANNELS}
                    print(f"  {senders} sender(s): " + ", ".join(
                        f"{c} p95 {s['p95']:.1f} ms" for c, s in done.items()), flush=True)
    finally:
        shutil.rmtree(var_dir, ignore_errors=True)
    _print_table(results, turns, rounds)


def _print_table(results, turns, rounds):
    print()
    print("Webhook round trip per channel vs the stock rest channel (one stack, same model, one run)")
    print(f"conversation: {' / '.join(CONVERSATION)}; each conversation a fresh customer; "
          f">= {turns} timed turns per cell in {rounds} interleaved runs")
    header = (f"{'channel':<9} {'senders':>7} {'n':>5} {'err':>4} {'p50 ms':>8} {'p95 ms':>8} {'msg/s':>7} "
              f"{'out/turn':>8} {'p95 per run':>15} {'p95 vs rest':>12}  target <= {TARGET_MS:g} ms")
    print(header)
    print("-" * len(header))
    verdicts = []
    for senders in CONCURRENCY:
        base = _summary(results[("rest", senders)])
        for channel in CHANNELS:
            s = _summary(results[(channel, senders)])
            if channel == "rest":
                delta, verdict = "baseline", ""
            else:
                overhead = s["p95"] - base["p95"]
                ok = overhead <= TARGET_MS and not s["errors"]
                delta = f"{overhead:+.1f} ms"
                verdict = "met" if ok else ("MISSED" if overhead > TARGET_MS else "errors")
                verdicts.append((channel, senders, overhead, ok))
            spread = f"{min(s['run_p95']):.0f}-{max(s['run_p95']):.0f}" if s["run_p95"] else "-"
            print(f"{channel:<9} {senders:>7} {s['n']:>5} {len(s['errors']):>4} {s['p50']:>8.1f} {s['p95']:>8.1f} "
                  f"{s['rate']:>7.1f} {s['replies']:>8.2f} {spread:>15} {delta:>12}  {verdict}")
    print("out/turn: bot messages per turn (rest/webchat: in the response; whatsapp/telegram: "
          "outbound requests the recorder received)")
    print("p95 per run: lowest-highest p95 of the interleaved runs alone (ms), a feel for the noise")
    late = sum(_summary(results[(c, n)])["late"] for c in API_MOUNTS for n in CONCURRENCY)
    print(f"whatsapp/telegram turns whose last outbound request arrived after the webhook response: {late}")
    for (channel, senders), chunk in results.items():
        errors = _summary(chunk)["errors"]
        if errors:
            print(f"{channel} at {senders} sender(s): {len(errors)} error(s), first: {errors[0]}")
    missed = [v for v in verdicts if not v[3]]
    if missed:
        print("target (<= %g ms p95 over rest) MISSED for: %s" % (TARGET_MS, ", ".join(
            f"{c} at {n} sender(s) ({o:+.1f} ms)" for c, n, o, _ in missed)))
    else:
        print(f"target (<= {TARGET_MS:g} ms p95 over rest) met for every channel at every concurrency")


# ------------------------------------------------------------------ section 2

SEQUENTIAL = 300
CONCURRENT = 600
WORKERS = 16
WARMUP = 20


def _report(label, latencies_ms):
    print(
        f"  {label:<44} p50 {statistics.median(latencies_ms):6.2f} ms   "
        f"p95 {_percentile(latencies_ms, 0.95):6.2f} ms   max {max(latencies_ms):6.2f} ms"
    )


def bench_webhooks():
    import requests

    from connectors.telegram import TelegramInput
    from connectors.whatsapp import WhatsAppInput
    from tests.connectors.harness import serve_channel
    from tests.support import payloads as p
    from tests.support.recorder import Recorder

    secret = "bench-secret"
    with Recorder() as api:
        whatsapp = WhatsAppInput.from_credentials({
            "verify_token": "v", "app_secret": secret, "access_token": "t",
            "phone_number_id": p.BUSINESS_PHONE_NUMBER_ID, "api_base": api.url,
        })
        with serve_channel(whatsapp) as served:
            session = requests.Session()
            url = served.url + "/webhook"
            local = threading.local()

            def client():
                # One keep-alive connection per sending thread, like a platform's pool.
                if not hasattr(local, "session"):
                    local.session = requests.Session()
                return local.session

            def send_whatsapp(index, wa_id):
                payload = p.whatsapp_text_payload(wa_id, f"message {index}", f"wamid.bench.{uuid.uuid4().hex}")
                raw, headers = p.signed_whatsapp_request(payload, secret)
                started = time.perf_counter()
                response = client().post(url, data=raw, headers=headers, timeout=30)
                elapsed = (time.perf_counter() - started) * 1000
                assert response.status_code == 200, response.text
                return elapsed, raw, headers

            for i in range(WARMUP):
                send_whatsapp(i, "16505550100")
            api.clear()
            gc.disable()
            sequential = [send_whatsapp(i, "16505550101")[0] for i in range(SEQUENTIAL)]
            gc.enable()
            api.wait_for(SEQUENTIAL, timeout=60)
            print(f"WhatsApp webhook -> echo reply sent ({SEQUENTIAL} messages, one customer)")
            _report("latency per message", sequential)

            _, raw, headers = send_whatsapp(0, "16505550102")
            duplicates = []
            for _ in range(100):
                started = time.perf_counter()
                assert session.post(url, data=raw, headers=headers, timeout=30).status_code == 200
                duplicates.append((time.perf_counter() - started) * 1000)
            _report("redelivered duplicate (answered, not processed)", duplicates)

            forged = []
            for _ in range(100):
                started = time.perf_counter()
                assert session.post(url, data=raw, headers={"X-Hub-Signature-256": "sha256=00"}).status_code == 403
                forged.append((time.perf_counter() - started) * 1000)
            _report("forged signature (refused)", forged)

            api.clear()
            customers = [f"1650555{1000 + i:04d}" for i in range(WORKERS * 4)]
            started = time.perf_counter()
            with ThreadPoolExecutor(WORKERS) as pool:
                results = list(pool.map(lambda i: send_whatsapp(i, customers[i % len(customers)])[0],
                                        range(CONCURRENT)))
            wall = time.perf_counter() - started
            api.wait_for(CONCURRENT, timeout=120)
            print(f"WhatsApp webhook, {WORKERS} concurrent senders, {len(customers)} customers, {CONCURRENT} messages")
            _report("latency per message", results)
            print(f"  {'throughput':<44} {CONCURRENT / wall:8.0f} messages/s")

        telegram = TelegramInput.from_credentials({"bot_token": "1:bench", "secret_token": secret, "api_base": api.url})
        with serve_channel(telegram) as served:
            session = requests.Session()
            url = served.url + "/webhook"
            headers = p.telegram_headers(secret)
            latencies = []
            for i in range(WARMUP + SEQUENTIAL):
                body = json.dumps(p.telegram_text_update(4242, f"**message** {i}.", 10_000_000 + i))
                started = time.perf_counter()
                assert session.post(url, data=body, headers=headers, timeout=30).status_code == 200
                if i >= WARMUP:
                    latencies.append((time.perf_counter() - started) * 1000)
            print(f"Telegram webhook -> MarkdownV2 echo sent ({SEQUENTIAL} updates)")
            _report("latency per update", latencies)


def bench_renderers():
    from connectors.markup import split_text, to_telegram_v2, to_whatsapp

    paragraph = ("Your order **4471** ships _today_ via UPS (tracking: 1Z-999-AA1). "
                 "See [the FAQ](https://example.com/faq_(v2)) or run `status 4471`. ") * 6
    text = "\n\n".join([paragraph] * 12)  # about 10 KB
    print(f"Renderers on a {len(text) // 1024} KB answer")
    for label, function in (
        ("to_whatsapp", lambda: to_whatsapp(text)),
        ("to_telegram_v2", lambda: to_telegram_v2(text)),
        ("split_text(4096)", lambda: split_text(text, 4096)),
    ):
        for _ in range(5):
            function()
        timings = []
        for _ in range(50):
            started = time.perf_counter()
            function()
            timings.append((time.perf_counter() - started) * 1000)
        _report(label, timings)


def bench_echo(stop_redis=False):
    """Section 2: the connector pipeline in process with an echo agent, and the renderers.

    ``stop_redis``: shut down the embedded Redis afterwards (only when its var/ is ours).
    """
    os.environ.setdefault("OUTBOUND_RETRY_BASE_DELAY", "0.01")
    prefix = "tlbench" + uuid.uuid4().hex[:10]
    os.environ["THREADLINE_KEY_PREFIX"] = prefix
    import logging

    logging.disable(logging.WARNING)
    try:
        bench_webhooks()
        bench_renderers()
    finally:
        from threadline import redis_client

        client = redis_client.get_client()
        keys = list(client.scan_iter(match=prefix + ":*", count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start:start + 1000])
        if stop_redis and not os.environ.get("REDIS_URL"):
            redis_client.stop_embedded()


def main():
    on_signals_exit()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=300, help="least timed turns per (channel, senders) cell")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved runs each cell is split into")
    parser.add_argument("--section", choices=("all", "stack", "echo"), default="all")
    parser.add_argument("--no-warmup", action="store_true", help="skip the warm-up (smoke tests only)")
    args = parser.parse_args()
    # Our own throwaway var/ (embedded Redis, SQLite) unless the caller chose one;
    # section 1 gives its stack a separate one.
    own_var_dir = None
    if not os.environ.get("THREADLINE_VAR_DIR"):
        own_var_dir = os.environ["THREADLINE_VAR_DIR"] = tempfile.mkdtemp(prefix="threadline-bench-")
    if args.section in ("all", "stack"):
        print("== 1. Webhook round trip per channel on the real stack ==", flush=True)
        try:
            bench_channels(max(1, args.turns), max(1, args.rounds), warmup=not args.no_warmup)
        except Exception:
            traceback.print_exc()
            print("section 1 failed (see above)", flush=True)
    if args.section in ("all", "echo"):
        print("\n== 2. Connector pipeline in process, echo agent ==", flush=True)
        try:
            bench_echo(stop_redis=own_var_dir is not None)
        except Exception:
            traceback.print_exc()
            print("section 2 failed (see above)", flush=True)
    if own_var_dir:
        shutil.rmtree(own_var_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
