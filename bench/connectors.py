"""Benchmark: the connector pipeline over real HTTP, and the renderers.

A signed WhatsApp delivery (and a Telegram update) goes through the real webhook
(Rasa's ``configure_app``, random port): size limit, signature, parse, dedupe,
identity, ``UserMessage``; a stand-in agent echoes it and the reply is sent to a
local recorder standing in for the platform API. Measured: per-message latency
(webhook request until the reply has been sent) one customer at a time, and
throughput with many customers at once; then the Markdown renderers and the
splitter on a long answer. Uses Redis (``REDIS_URL``, else the embedded server)
under a throwaway key prefix deleted afterwards. Client, server and API
stand-in share one process (and one GIL), so the throughput figure is a floor.
Prints figures; always exits 0.

    PYTHONPATH=. .venv/bin/python bench/connectors.py
"""
import gc
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# Run as a script, this file's directory comes first on sys.path and its name
# would shadow the ``connectors`` package; look in the project root instead.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))
sys.modules.pop("connectors", None)

SEQUENTIAL = 300
CONCURRENT = 600
WORKERS = 16
WARMUP = 20


def _percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


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


def main():
    os.environ.setdefault("THREADLINE_VAR_DIR", tempfile.mkdtemp(prefix="threadline-bench-"))
    os.environ.setdefault("OUTBOUND_RETRY_BASE_DELAY", "0.01")
    prefix = "tlbench" + uuid.uuid4().hex[:10]
    os.environ["THREADLINE_KEY_PREFIX"] = prefix
    import logging

    logging.disable(logging.WARNING)
    try:
        bench_webhooks()
        bench_renderers()
    finally:
        from threadline.redis_client import get_client

        client = get_client()
        keys = list(client.scan_iter(match=prefix + ":*", count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start:start + 1000])
    return 0


if __name__ == "__main__":
    sys.exit(main())
