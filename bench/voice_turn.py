"""Benchmark: one voice turn, Threadline's twilio_voice vs Rasa's stock twilio_voice channel.

A turn is Twilio posting the caller's ``SpeechResult`` to the gather action and
getting TwiML back: signature check, call state, identity, NLU, policies, the
action server (order form validation, order lookup), the tracker store and the
SSML rendering. Two stacks run the same model, each with its own action server
and one shared Redis and database (a throwaway var/ directory):

- Threadline: ``connectors.twilio_voice.TwilioVoiceInput`` (signed requests)
- stock:      Rasa's ``twilio_voice`` (no signature check, plain ``<Say>``)

Each simulated caller rings once (not timed), then says, turn after turn,
"where is my order" / "482913" / "thank you" (a form, a custom action, a plain
response). At each concurrency level (simultaneous calls) both servers get the
same load, one after the other; p50 and p95 are over every turn of the level.
Callers first fire their turns back to back (a saturation test: no real call
does that), then again "paced": each call's turns about ``--pause`` seconds
apart (default 2 s, varied +-50%: the prompt being spoken and the caller
answering) and calls starting at random moments, which is what phone lines
actually send.
A third line serves Threadline's channel in-process with a bot that answers
instantly: what the connector itself costs (signature, identity, call state,
events, SSML), without NLU, policies or actions. Prints a table and the
largest level whose p95 is <= 300 ms; always exits 0. ``--workers N`` runs
each rasa server with N Sanic workers (``SANIC_WORKERS``; the Redis lock and
tracker stores make that safe).

    PYTHONPATH=. .venv/bin/python bench/voice_turn.py [--levels 1,4,10] [--turns 90] [--workers 2] [--pause 2]
"""
import argparse
import asyncio
import contextlib
import gc
import math
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import aiohttp
import yaml

# Run as a script, bench/ comes first on sys.path, where a bench module may
# share a package's name (bench/connectors.py): the project root goes first.
ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
from bench.stopping import on_signals_exit  # noqa: E402

from connectors.twilio_voice import sign_request  # noqa: E402

TARGET_P95_MS = 300.0
REQUIRED_LEVELS = (1, 4, 10)
SEARCH_LEVELS = (1, 2, 4, 6, 8, 10, 12, 16, 20, 24, 32)
UTTERANCES = ("where is my order", "482913", "thank you")
AUTH_TOKEN = "bench-" + uuid.uuid4().hex


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: List[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


class Server:
    """One of the two servers under test and how to post a turn to it."""

    def __init__(self, label: str, base: str, signed: bool, pause: float = 0.0) -> None:
        self.pause = pause
        self.label, self.base, self.signed = label, base, signed

    def request(self, path: str, params: List[Tuple[str, str]]) -> Tuple[str, Dict[str, str]]:
        """(URL, headers) for posting ``params`` to ``path``, signed for Threadline."""
        url = f"{self.base}{path}"
        headers = sign_request(AUTH_TOKEN, url, params) if self.signed else {}
        return url, headers


async def post(session: aiohttp.ClientSession, url: str, params, headers) -> str:
    async with session.post(url, data=params, headers=headers) as reply:
        body = await reply.text()
        if reply.status != 200 or "<Response" not in body:
            raise RuntimeError(f"{url}: {reply.status} {body[:200]}")
        return body


async def caller(server: Server, session: aiohttp.ClientSession, turns: int, samples: List[float],
                 pause: float = 0.0) -> None:
    """One call: ring, then ``turns`` timed speech turns, about ``pause`` seconds apart."""
    if pause:
        await asyncio.sleep(random.uniform(0, pause))  # calls start at different moments
    sid = "CA" + uuid.uuid4().hex
    number = f"+1415555{int(uuid.uuid4().int % 10000):04d}"
    ring = [("CallSid", sid), ("From", number), ("To", "+18005551212"), ("CallStatus", "ringing")]
    url, headers = server.request("/webhook", ring)
    await post(session, url, ring, headers)
    for turn in range(1, turns + 1):
        text = UTTERANCES[(turn - 1) % len(UTTERANCES)]
        params = [("CallSid", sid), ("From", number), ("SpeechResult", text), ("Confidence", "0.92")]
        path = f"/gather?turn={turn}" if server.signed else "/webhook"
        url, headers = server.request(path, params)
        started = time.perf_counter()
        await post(session, url, params, headers)
        samples.append((time.perf_counter() - started) * 1000)
        if pause:
            # Real calls are not in step with each other: vary the gap +-50%.
            await asyncio.sleep(pause * random.uniform(0.5, 1.5))


async def run_level(server: Server, concurrency: int, min_turns: int, turns_per_call: int = 6) -> List[float]:
    """Turn latencies (ms) with ``concurrency`` calls in flight until ``min_turns`` were timed."""
    samples: List[float] = []
    connector = aiohttp.TCPConnector(limit=concurrency * 2)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:

        async def worker() -> None:
            while len(samples) < min_turns:
                await caller(server, session, turns_per_call, samples, server.pause)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return samples


def credentials_file(directory: Path, name: str, config: dict) -> str:
    path = directory / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return str(path)


def start_stacks(work: Path, workers: int):
    """Threadline's stack and the stock channel's stack, sharing one Redis and database."""
    from threadline.stack import Stack

    env = {"TWILIO_AUTH_TOKEN": AUTH_TOKEN, "THREADLINE_VAR_DIR": str(work), "LOG_LEVEL": "WARNING",
           "SANIC_WORKERS": str(workers)}
    ours = Stack(
        rasa_port=_free_port(), action_port=_free_port(), env=env,
        credentials=credentials_file(work, "ours.yml", {
            "connectors.twilio_voice.TwilioVoiceInput": {"auth_token": "${TWILIO_AUTH_TOKEN}"}}),
    ).start()
    stock_env = dict(env, REDIS_URL=ours.env["REDIS_URL"])
    try:
        stock = Stack(
            rasa_port=_free_port(), action_port=_free_port(), env=stock_env,
            credentials=credentials_file(work, "stock.yml", {"twilio_voice": {"assistant_voice": "woman"}}),
        )
        stock.ready_path = "/"  # only Rasa's own channel: no web chat route to wait for
        stock.start()
    except BaseException:
        ours.stop()
        raise
    return ours, stock


@contextlib.contextmanager
def connector_only(redis_url: str):
    """Threadline's channel in this process with a bot that answers instantly (no NLU)."""
    os.environ["REDIS_URL"] = redis_url
    from connectors.twilio_voice import TwilioVoiceInput
    from tests.connectors.harness import EchoAgent, serve_channel

    def answer(message):
        return [{"text": "Order 482913 is **on its way**. Expected delivery: Monday."}]

    with serve_channel(TwilioVoiceInput.from_credentials({"auth_token": AUTH_TOKEN}), EchoAgent(answer)) as served:
        yield served.url


def largest_level(results: Dict[int, List[float]]) -> Optional[int]:
    """The largest level whose p95 holds the target, counting up without gaps."""
    best = None
    for level in sorted(results):
        if percentile(results[level], 0.95) > TARGET_P95_MS:
            break
        best = level
    return best


async def measure(servers: List[Server], levels: List[int], min_turns: int, search: bool) -> Dict[str, Dict[int, List[float]]]:
    """Each level on each server in turn; a searching run stops a server after its first miss."""
    results: Dict[str, Dict[int, List[float]]] = {s.label: {} for s in servers}
    for server in servers:  # warm up: first-call costs are not a turn's
        await run_level(server, 2, 12)
    done = {s.label: False for s in servers}
    for level in levels:
        for server in servers:
            if search and done[server.label] and level not in REQUIRED_LEVELS:
                continue
            gc.collect()
            samples = await run_level(server, level, max(min_turns, level * 6))
            results[server.label][level] = samples
            print(f"  {server.label}: {level} calls, p95 {percentile(samples, 0.95):.0f} ms", flush=True)
            if percentile(samples, 0.95) > TARGET_P95_MS:
                done[server.label] = True
        if search and all(done.values()) and level >= max(REQUIRED_LEVELS):
            break
    return results


def report(results: Dict[str, Dict[int, List[float]]], ours: str, stock: str) -> None:
    """Print the table, the largest level holding the target and the p95 ratios."""
    print("\nOne voice turn: SpeechResult webhook in -> TwiML out (ms, client-side round trip)")
    print(f"{'server':<44}{'calls':>6}{'p50':>9}{'p95':>9}{'max':>9}{'turns':>7}")
    for label, by_level in results.items():
        for level, samples in sorted(by_level.items()):
            print(f"{label:<44}{level:>6}{statistics.median(samples):>9.1f}{percentile(samples, 0.95):>9.1f}"
                  f"{max(samples):>9.1f}{len(samples):>7}")
    print(f"\nLargest number of concurrent calls with p95 <= {TARGET_P95_MS:.0f} ms:")
    for label, by_level in results.items():
        best = largest_level(by_level)
        note = f" (the highest level tried, {best}, still passed)" if best == max(by_level) else ""
        print(f"  {label:<42} {best if best is not None else 'none'}{note}")
    for level in REQUIRED_LEVELS:
        if level in results[ours] and level in results[stock]:
            ratio = percentile(results[ours][level], 0.95) / percentile(results[stock][level], 0.95)
            print(f"  p95 at {level:>2} calls: Threadline / stock = {ratio:.2f}")


def main(argv: Optional[List[str]] = None) -> int:
    """Start both stacks, measure, print; always 0 (figures, not a gate)."""
    on_signals_exit()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", help="comma-separated concurrency levels (default: search up to 32)")
    parser.add_argument("--turns", type=int, default=90, help="minimum timed turns per level and server")
    parser.add_argument("--workers", type=int, default=1, help="Sanic workers per rasa server (SANIC_WORKERS)")
    parser.add_argument("--pause", type=float, default=2.0,
                        help="seconds between a paced call's turns (the prompt being spoken, the caller "
                             "answering); the back-to-back runs use none")
    args = parser.parse_args(argv)
    levels = [int(x) for x in args.levels.split(",")] if args.levels else list(SEARCH_LEVELS)
    ours_label = f"threadline twilio_voice (signed), {args.workers}w"
    stock_label = f"rasa stock twilio_voice, {args.workers}w"
    with tempfile.TemporaryDirectory(prefix="threadline-bench-") as tmp:
        os.environ["THREADLINE_VAR_DIR"] = tmp
        os.environ.setdefault("SQLALCHEMY_SILENCE_UBER_WARNING", "1")
        print("starting two stacks (Threadline and stock twilio_voice) on the trained model ...", flush=True)
        ours, stock = start_stacks(Path(tmp), args.workers)
        try:
            servers = [
                Server(ours_label, f"{ours.rasa_url}/webhooks/twilio_voice", signed=True),
                Server(stock_label, f"{stock.rasa_url}/webhooks/twilio_voice", signed=False),
            ]
            results = asyncio.run(measure(servers, levels, args.turns, search=not args.levels))
            if args.pause:
                paced = [Server(f"{server.label}, paced {args.pause:g}s", server.base, server.signed, args.pause)
                         for server in servers]
                results.update(asyncio.run(measure(paced, sorted(set(REQUIRED_LEVELS)), args.turns, search=False)))
            with connector_only(ours.env["REDIS_URL"]) as url:
                bare = Server("threadline connector only (instant bot)", url, signed=True)
                results.update(asyncio.run(measure([bare], sorted(set(REQUIRED_LEVELS)), args.turns, search=False)))
        finally:
            stock.stop()
            ours.stop()
    report(results, ours_label, stock_label)
    return 0


if __name__ == "__main__":
    sys.exit(main())
