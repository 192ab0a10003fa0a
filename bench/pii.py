"""Benchmark: personal data masked at ingestion (detection, nothing stored raw, cost per message).

1. Detection (in process): ``--messages`` generated messages (default 500),
   each carrying one card number (Luhn-valid, 13-19 digits, grouped or not),
   IBAN (valid checksums, eight countries), email or phone number (national
   and international forms of US, UK, German, French and Indian numbers),
   next to an order number, a postal code, an amount or a date. Recall per
   kind (the value was replaced) and how often the order number, postal code,
   amount or date was left exactly as it was. Targets: recall >= 0.99 for
   cards, IBANs and emails, >= 0.97 for phones; others left alone >= 0.98.

2. Nothing raw is kept (the real stack: action server, rasa server with
   models/threadline.tar.gz, embedded Redis and SQLite in a throwaway var/):
   the same messages sent through every channel's real webhook, a quarter
   each (signed WhatsApp deliveries, Telegram updates, web chat REST
   messages, Twilio speech results), while a subscriber listens to the desk's
   live channel. Then every raw value is looked for in every Redis key, every
   row of every table of the database, every file under var/ (the servers'
   logs) and everything the desk was sent. Target: 0.

3. Cost (in process, the connector pipeline with an echo agent): the same
   signed WhatsApp delivery through the real webhook with masking on and
   off, interleaved, ``--turns`` each; p50/p95 of both and the difference.
   Target: masking adds <= 15 ms p95 per message.

Prints figures; always exits 0.

    PYTHONPATH=. .venv/bin/python bench/pii.py [--messages 500] [--turns 300] [--section all|detect|stack|cost]
"""
import argparse
import concurrent.futures
import json
import os
import random
import shutil
import sqlite3
import string
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

IBAN_SPECS = {"DE": "8n10n", "GB": "4a14n", "FR": "10n11c2n", "ES": "20n", "NL": "4a10n", "IT": "1a10n12c",
              "BE": "12n", "CH": "5n12c"}


def luhn_complete(digits):
    total = 0
    for i, ch in enumerate(reversed(digits + "0")):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return digits + str((10 - total % 10) % 10)


def card(rng):
    prefix, length = rng.choice([("4", 16), ("51", 16), ("55", 16), ("37", 15), ("6011", 16), ("4", 13), ("35", 16)])
    number = luhn_complete(prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1)))
    style = rng.random()
    if style < 0.4:
        return number
    sep = " " if style < 0.8 else "-"
    if len(number) == 15:  # American Express: 4-6-5
        return sep.join([number[:4], number[4:10], number[10:]])
    if len(number) == 13:  # 4-4-5
        return sep.join([number[:4], number[4:8], number[8:]])
    return sep.join(number[i:i + 4] for i in range(0, len(number), 4))


def iban(rng):
    country = rng.choice(list(IBAN_SPECS))
    bban = ""
    spec = IBAN_SPECS[country]
    number = ""
    for ch in spec:
        if ch.isdigit():
            number += ch
            continue
        alphabet = {"n": string.digits, "a": string.ascii_uppercase, "c": string.ascii_uppercase + string.digits}[ch]
        bban += "".join(rng.choice(alphabet) for _ in range(int(number)))
        number = ""
    rearranged = bban + country + "00"
    numeric = "".join(str(int(c, 36)) for c in rearranged)
    check = 98 - int(numeric) % 97
    value = f"{country}{check:02d}{bban}"
    return " ".join(value[i:i + 4] for i in range(0, len(value), 4)) if rng.random() < 0.5 else value


def email(rng):
    name = rng.choice(["jane", "omar", "mei", "sam", "li", "rosa", "ahmed", "k.novak", "t_b", "ana-maria"])
    domain = rng.choice(["example.com", "mail.co.uk", "gmail.com", "outlook.de", "uni.edu", "shop.example.org"])
    return f"{name}{rng.choice(['', '.', '_'])}{rng.randint(1, 999)}@{domain}"


def phone(rng):
    kind = rng.random()
    area = rng.choice(["415", "212", "646", "312", "617", "206", "303", "512"])
    line = f"{rng.randint(200, 999)}{rng.randint(0, 9999):04d}"
    if kind < 0.25:
        return f"+1 {area} {line[:3]} {line[3:]}"
    if kind < 0.45:
        return f"({area}) {line[:3]}-{line[3:]}"
    if kind < 0.6:
        return f"{area}-{line[:3]}-{line[3:]}"
    if kind < 0.75:
        return f"+44 20 7{rng.randint(100, 999)} {rng.randint(1000, 9999)}"
    if kind < 0.85:
        return f"+49 30 {rng.randint(1000000, 9999999)}"
    if kind < 0.93:
        return f"+33 1 {rng.randint(10, 99)} {rng.randint(10, 99)} {rng.randint(10, 99)} {rng.randint(10, 99)}"
    return f"+91 98{rng.randint(10000000, 99999999)}"


def keeper(rng):
    kind = rng.choice(["order", "postal", "amount", "date"])
    if kind == "order":
        return kind, str(rng.randint(100000, 999999))
    if kind == "postal":
        return kind, rng.choice([str(rng.randint(10000, 99999)), "SW1A 2AA", "75008", "10115"])
    if kind == "amount":
        return kind, rng.choice([f"${rng.randint(1, 9999)}.{rng.randint(0, 99):02d}", f"€{rng.randint(1, 999)}",
                                 f"{rng.randint(1, 500)} dollars"])
    return kind, rng.choice([f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
                             f"{rng.randint(1, 12)}/{rng.randint(1, 28)}/2025", "next Tuesday at 3pm"])


TEMPLATES = {
    "card": ["my card is {v}, order {k}", "charge {v} please ({k})", "card number {v} for {k}"],
    "iban": ["refund to {v}, order {k}", "my IBAN: {v} re {k}", "pay {v} - {k}"],
    "email": ["email me at {v} about {k}", "{v} is my address, ref {k}", "confirmation to {v} for {k}"],
    "phone": ["call me on {v} about {k}", "my number is {v}, {k}", "text {v} re {k}"],
}
MAKERS = {"card": card, "iban": iban, "email": email, "phone": phone}


def messages(count, seed=13):
    rng = random.Random(seed)
    found = []
    for i in range(count):
        kind = list(MAKERS)[i % 4]
        value = MAKERS[kind](rng)
        keep_kind, keep = keeper(rng)
        found.append({"kind": kind, "value": value, "keep_kind": keep_kind, "keep": keep,
                      "text": rng.choice(TEMPLATES[kind]).format(v=value, k=keep)})
    return found


def bench_detection(count):
    from threadline import pii

    pii.warm_up()
    sample = messages(count)
    hits = {kind: [0, 0] for kind in MAKERS}
    kept = {}
    for item in sample:
        masked = pii.scrub(item["text"])
        hits[item["kind"]][0] += item["value"] not in masked
        hits[item["kind"]][1] += 1
        ok = item["keep"] in masked
        kept.setdefault(item["keep_kind"], [0, 0])
        kept[item["keep_kind"]][0] += ok
        kept[item["keep_kind"]][1] += 1
    print(f"\n1. Detection, {count} generated messages")
    targets = {"card": 0.99, "iban": 0.99, "email": 0.99, "phone": 0.97}
    for kind, (good, total) in hits.items():
        print(f"  recall {kind:<6} {good / total:.3f} ({good}/{total}; target >= {targets[kind]})")
    left = sum(g for g, _ in kept.values()) / sum(t for _, t in kept.values())
    print(f"  left alone: {left:.3f} (target >= 0.98): " + ", ".join(
        f"{k} {g}/{t}" for k, (g, t) in sorted(kept.items())))
    return sample


# ---------------------------------------------------------------- the stack


def _raw_values(sample):
    values = set()
    for item in sample:
        values.add(item["value"])
        compact = item["value"].replace(" ", "").replace("-", "")
        if item["kind"] in ("card", "iban"):
            values.add(compact)
    return values


def bench_stack(sample):
    import redis as redis_lib
    import requests

    from connectors.twilio_voice import sign_request
    from tests.conftest import TEST_SECRETS, free_port
    from tests.support import payloads as p
    from tests.support.recorder import Recorder
    from threadline.keys import Keys
    from threadline.stack import Stack

    var_dir = tempfile.mkdtemp(prefix="threadline-bench-pii-")
    secrets = dict(TEST_SECRETS)
    desk_messages = []
    try:
        with Recorder() as recorder:
            env = dict(secrets, THREADLINE_VAR_DIR=var_dir, THREADLINE_KEY_PREFIX="benchpii",
                       RATE_LIMIT_PER_SOURCE="100000",
                       WHATSAPP_API_BASE=recorder.url + "/graph", TELEGRAM_API_BASE=recorder.url + "/telegram")
            print("\n2. Nothing raw is kept: starting the stack ...", flush=True)
            with Stack(rasa_port=free_port(), action_port=free_port(), env=env) as stack:
                redis = redis_lib.Redis.from_url(stack.env["REDIS_URL"])
                listener = redis.pubsub()
                desk_keys = Keys("benchpii")
                listener.subscribe(desk_keys.desk_channel(), desk_keys.desk_events_channel())
                stop = threading.Event()

                def listen():
                    while not stop.is_set():
                        message = listener.get_message(timeout=0.2)
                        if message and message["type"] == "message":
                            desk_messages.append(message["data"])

                thread = threading.Thread(target=listen, daemon=True)
                thread.start()
                base = stack.rasa_url + "/webhooks"
                counter = iter(range(10 ** 9))

                def send(index_item):
                    index, item = index_item
                    channel = ("whatsapp", "telegram", "webchat", "twilio_voice")[index % 4]
                    n = next(counter)
                    text = item["text"]
                    if channel == "whatsapp":
                        raw, headers = p.signed_whatsapp_request(
                            p.whatsapp_text_payload(f"1650{3_000_000 + n}", text, f"wamid.pii.{uuid.uuid4().hex}",
                                                    phone_number_id=secrets["WHATSAPP_PHONE_NUMBER_ID"]),
                            secrets["WHATSAPP_APP_SECRET"])
                        reply = requests.post(base + "/whatsapp/webhook", data=raw, headers=headers, timeout=60)
                    elif channel == "telegram":
                        update = p.telegram_text_update(800_000_000 + n, text, 5_000_000 + n)
                        reply = requests.post(base + "/telegram/webhook", data=json.dumps(update),
                                              headers=p.telegram_headers(secrets["TELEGRAM_SECRET_TOKEN"]), timeout=60)
                    elif channel == "webchat":
                        sender = requests.post(base + "/webchat/session", timeout=60).json()["sender"]
                        reply = requests.post(base + "/webchat/webhook", json={"sender": sender, "message": text},
                                              timeout=60)
                    else:
                        sid = "CA" + uuid.uuid4().hex
                        caller = f"+1650{4_000_000 + n}"
                        url = base + "/twilio_voice/webhook"
                        params = [("CallSid", sid), ("From", caller), ("To", "+18005551212"), ("CallStatus", "ringing")]
                        requests.post(url, data=params, headers=sign_request(secrets["TWILIO_AUTH_TOKEN"], url, params),
                                      timeout=60)
                        url = base + "/twilio_voice/gather?turn=1"
                        params = [("CallSid", sid), ("From", caller), ("SpeechResult", text), ("Confidence", "0.9")]
                        reply = requests.post(url, data=params,
                                              headers=sign_request(secrets["TWILIO_AUTH_TOKEN"], url, params), timeout=60)
                    return channel, reply.status_code

                started = time.perf_counter()
                with concurrent.futures.ThreadPoolExecutor(4) as pool:
                    statuses = list(pool.map(send, enumerate(sample)))
                elapsed = time.perf_counter() - started
                time.sleep(2)
                stop.set()
                thread.join(2)
                ok = sum(1 for _, status in statuses if status == 200)
                by_channel = {}
                for channel, status in statuses:
                    by_channel.setdefault(channel, {}).setdefault(status, 0)
                    by_channel[channel][status] += 1
                print(f"  sent {len(statuses)} messages ({ok} answered 200) in {elapsed:.0f} s: "
                      + ", ".join(f"{c} {dict(s)}" for c, s in by_channel.items()), flush=True)
                found = _scan(redis, Path(var_dir), desk_messages, _raw_values(sample))
    finally:
        shutil.rmtree(var_dir, ignore_errors=True)
    for store, hits in found.items():
        print(f"  raw values in {store}: {len(hits)}" + (f" (e.g. {sorted(hits)[:3]})" if hits else ""))
    print(f"  total raw values found: {sum(len(h) for h in found.values())} (target 0); "
          f"desk messages seen: {len(desk_messages)}")


def _scan(redis, var_dir, desk_messages, raws):
    def look(blob, into):
        for raw in raws:
            if raw in blob:
                into.add(raw)

    found = {"Redis": set(), "database": set(), "var/ files (logs)": set(), "desk": set()}
    for key in redis.scan_iter(count=1000):
        kind = redis.type(key)
        if kind == b"string":
            blob = redis.get(key) or b""
        elif kind == b"list":
            blob = b"\n".join(redis.lrange(key, 0, -1))
        elif kind == b"hash":
            blob = b"\n".join(k + b"=" + v for k, v in redis.hgetall(key).items())
        elif kind == b"set":
            blob = b"\n".join(redis.smembers(key))
        elif kind == b"zset":
            blob = b"\n".join(redis.zrange(key, 0, -1))
        elif kind == b"stream":
            blob = json.dumps([[i.decode(), {k.decode(): v.decode() for k, v in f.items()}]
                               for i, f in redis.xrange(key)]).encode()
        else:
            blob = b""
        look((key + b"\n" + blob).decode("utf-8", "replace"), found["Redis"])
    database = var_dir / "threadline.db"
    if database.exists():
        with sqlite3.connect(database) as conn:
            for (table,) in conn.execute("select name from sqlite_master where type='table'"):
                for row in conn.execute(f'select * from "{table}"'):
                    look(str(row), found["database"])
    for path in var_dir.rglob("*"):
        if path.is_file() and path.suffix not in (".rdb", ".db", ".sock") and "redis" not in path.parts:
            look(path.read_text("utf-8", "replace"), found["var/ files (logs)"])
    look(b"\n".join(desk_messages).decode("utf-8", "replace"), found["desk"])
    return found


# ----------------------------------------------------------------- the cost


def _percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def bench_cost(turns):
    import requests

    from connectors import personal_data
    from connectors.whatsapp import WhatsAppInput
    from tests.connectors.harness import serve_channel
    from tests.support import payloads as p
    from tests.support.recorder import Recorder
    from threadline import pii, settings
    from threadline.redis_client import get_client

    os.environ["THREADLINE_KEY_PREFIX"] = "benchcost" + uuid.uuid4().hex[:8]
    os.environ.setdefault("THREADLINE_VAR_DIR", tempfile.mkdtemp(prefix="threadline-bench-cost-"))
    settings.reload()
    from threadline.db import ensure_ready

    ensure_ready()
    pii.warm_up()
    sample = messages(64, seed=99)
    timings = {True: [], False: []}
    with Recorder() as recorder:
        channel = WhatsAppInput.from_credentials({"verify_token": "v", "app_secret": "s", "access_token": "t",
                                                  "phone_number_id": p.BUSINESS_PHONE_NUMBER_ID,
                                                  "api_base": recorder.url})
        with serve_channel(channel) as served:
            session = requests.Session()
            for i in range(turns * 2 + 20):
                masking = i % 2 == 0
                item = sample[i % len(sample)]
                raw, headers = p.signed_whatsapp_request(
                    p.whatsapp_text_payload("16505550123", item["text"], f"wamid.cost.{uuid.uuid4().hex}"), "s")
                personal_data.ENABLED = masking
                started = time.perf_counter()
                session.post(served.url + "/webhook", data=raw, headers=headers, timeout=30)
                elapsed = (time.perf_counter() - started) * 1000
                if i >= 20:
                    timings[masking].append(elapsed)
            personal_data.ENABLED = True
    client = get_client()
    keys = list(client.scan_iter(match=os.environ["THREADLINE_KEY_PREFIX"] + ":*"))
    if keys:
        client.delete(*keys)
    direct = []
    for item in sample * 4:
        started = time.perf_counter()
        pii.mask(item["text"], tokenize=False)
        direct.append((time.perf_counter() - started) * 1000)
    on, off = timings[True], timings[False]
    print(f"\n3. Cost: the same signed WhatsApp delivery through the real webhook (echo agent), {len(on)} turns each")
    print(f"  masking on : p50 {_percentile(on, .5):.1f} ms, p95 {_percentile(on, .95):.1f} ms")
    print(f"  masking off: p50 {_percentile(off, .5):.1f} ms, p95 {_percentile(off, .95):.1f} ms")
    print(f"  masking adds {_percentile(on, .95) - _percentile(off, .95):+.1f} ms p95 "
          f"({_percentile(on, .5) - _percentile(off, .5):+.1f} ms p50); target <= 15 ms")
    print(f"  the analyzer alone, per message: p50 {_percentile(direct, .5):.2f} ms, p95 {_percentile(direct, .95):.2f} ms")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--turns", type=int, default=300)
    parser.add_argument("--section", choices=["all", "detect", "stack", "cost"], default="all")
    args = parser.parse_args()
    sample = bench_detection(args.messages) if args.section in ("all", "detect", "stack") else None
    if args.section in ("all", "stack"):
        bench_stack(sample)
    if args.section in ("all", "cost"):
        bench_cost(args.turns)
    return 0


if __name__ == "__main__":
    sys.exit(main())
