"""Turn cost on the REST channel: Threadline's pipeline vs Rasa's `rasa init` defaults.

Both models are trained on the same data (the default one once, cached under
models/bench/), served by the same stack (action server, Redis tracker and lock
stores), and driven by 1 and 10 concurrent senders, each holding a realistic
order-status conversation. Prints p50/p95 latency and messages per second.

    .venv/bin/python bench/turn.py [--messages 120]
"""
import argparse
import asyncio
import hashlib
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.stopping import on_signals_exit  # noqa: E402

from threadline.stack import RASA_BIN, Stack  # noqa: E402

# The defaults `rasa init` trains with in rasa 3.6 (its config.yml, uncommented).
RASA_INIT_CONFIG = """recipe: default.v1
language: en
assistant_id: bench-default
pipeline:
  - name: WhitespaceTokenizer
  - name: RegexFeaturizer
  - name: LexicalSyntacticFeaturizer
  - name: CountVectorsFeaturizer
  - name: CountVectorsFeaturizer
    analyzer: char_wb
    min_ngram: 1
    max_ngram: 4
  - name: DIETClassifier
    epochs: 100
  - name: EntitySynonymMapper
  - name: ResponseSelector
    epochs: 100
  - name: FallbackClassifier
    threshold: 0.3
    ambiguity_threshold: 0.1
policies:
  - name: MemoizationPolicy
  - name: TEDPolicy
    max_history: 5
    epochs: 100
  - name: RulePolicy
"""
CONVERSATION = ["hi", "where is my order", "482913", "thanks", "what are your opening hours", "bye"]


def default_model() -> Path:
    """Train (once per data version) the same data with rasa init's config."""
    bench_dir = ROOT / "models" / "bench"
    bench_dir.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha1()
    for path in sorted([ROOT / "domain.yml", *ROOT.glob("data/**/*.yml")]):
        digest.update(path.read_bytes())
    model = bench_dir / f"rasa-init-{digest.hexdigest()[:10]}.tar.gz"
    if not model.exists():
        config = bench_dir / "rasa-init-config.yml"
        config.write_text(RASA_INIT_CONFIG)
        print(f"training the rasa init baseline once ({model.name}) ...", flush=True)
        subprocess.run(
            [RASA_BIN, "train", "--config", str(config), "--out", str(bench_dir),
             "--fixed-model-name", model.name[: -len(".tar.gz")]],
            cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
        )
    return model


async def sender(session: aiohttp.ClientSession, url: str, count: int, latencies: list) -> None:
    """One customer sending ``count`` messages, one at a time, waiting for each reply."""
    conversation_id = f"bench-{uuid.uuid4().hex[:12]}"
    for i in range(count):
        text = CONVERSATION[i % len(CONVERSATION)]
        started = time.perf_counter()
        async with session.post(url, json={"sender": conversation_id, "message": text}) as reply:
            await reply.read()
            assert reply.status == 200, reply.status
        latencies.append((time.perf_counter() - started) * 1000)


async def measure(rasa_url: str, concurrency: int, messages: int) -> dict:
    """p50/p95 latency (ms) and throughput with ``concurrency`` senders."""
    url = f"{rasa_url}/webhooks/rest/webhook"
    latencies: list = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        await sender(session, url, len(CONVERSATION), [])  # warm-up
        per_sender = max(1, messages // concurrency)
        started = time.perf_counter()
        await asyncio.gather(*(sender(session, url, per_sender, latencies) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    ordered = sorted(latencies)
    return {
        "p50": statistics.median(ordered),
        "p95": ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))],
        "rate": len(ordered) / elapsed,
        "n": len(ordered),
    }


def run_model(label: str, model: Path, messages: int, results: dict) -> None:
    from tests.conftest import free_port

    from stock import credentials_with_rest

    with Stack(model=str(model.relative_to(ROOT)), rasa_port=free_port(), action_port=free_port(),
               credentials=credentials_with_rest()) as stack:
        for concurrency in (1, 10):
            results[(label, concurrency)] = asyncio.run(measure(stack.rasa_url, concurrency, messages))


def main() -> int:
    on_signals_exit()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=120, help="messages per concurrency level")
    args = parser.parse_args()
    os.environ.setdefault("THREADLINE_VAR_DIR", str(ROOT / "var" / "bench"))
    results: dict = {}
    models = {"threadline": ROOT / "models" / "threadline.tar.gz", "rasa init defaults": default_model()}
    for label, model in models.items():
        run_model(label, model, args.messages, results)
    print("\nREST channel turn cost (same data, same stack, same machine, one run)")
    print(f"{'model':<20} {'senders':>7} {'p50 ms':>8} {'p95 ms':>8} {'msg/s':>7} {'n':>5}")
    for (label, concurrency), r in results.items():
        print(f"{label:<20} {concurrency:>7} {r['p50']:>8.1f} {r['p95']:>8.1f} {r['rate']:>7.1f} {r['n']:>5}")
    ours, base = results[("threadline", 10)], results[("rasa init defaults", 10)]
    print(f"\nat 10 senders: p95 {ours['p95']:.0f} ms vs {base['p95']:.0f} ms; "
          f"throughput {ours['rate'] / base['rate']:.1f}x the rasa init defaults")
    return 0


if __name__ == "__main__":
    sys.exit(main())
