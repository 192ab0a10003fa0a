"""Where a saturated rasa process's CPU goes: py-spy samples sorted into the parts of a turn.

Used by ``bench/load.py --section profile``. py-spy samples the rasa
process's Python stacks while it holds the GIL (``--gil``), so only CPU
spent in Python counts, not a thread waiting on Redis or a socket; each
sample is put in the first part below whose frames it contains.

The connector layer is everything of ``connectors/`` outside Rasa's
``Agent.handle_message`` (verification, parsing, dedupe, limits, identity,
masking, the reply cache) plus the output channels Rasa calls inside it
(rendering and sending). Stock Rasa's ``rest`` channel is measured the same
way, so the two shares compare.
"""
from __future__ import annotations

import collections
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

HANDLE_MESSAGE = "handle_message rasa/core/agent.py"

# (part, frame patterns), first match wins; frames are "function path".
PARTS = [
    ("tracker store", ("threadline/tracker_store.py", "rasa/core/tracker_store.py")),
    ("lock store", ("lock_store.py",)),
    ("NLU", ("parse_message rasa/core/processor.py",)),
    ("action server call", ("rasa/core/actions/action.py", "jsonschema/")),  # Rasa validates each response
    ("policies", ("_predict_next_with_tracker rasa/core/processor.py",)),
]
CONNECTOR_PREFIXES = ("connectors/", "rasa/core/channels/")
# Rasa's own turn work (a sample whose stack was cut above Agent.handle_message).
RASA_PROCESSING = ("rasa/core/policies/", "rasa/core/featurizers/", "rasa/shared/", "rasa/nlu/",
                   "rasa/engine/", "rasa/utils/tensorflow/", "tensorflow/", "keras/", "dask/")


def py_spy() -> Optional[str]:
    """The py-spy binary (installed with the project), or None."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def record(pid: int, seconds: int, out: Path) -> subprocess.Popen:
    """Start py-spy on ``pid`` for ``seconds`` (raw collapsed stacks to ``out``)."""
    return subprocess.Popen([py_spy(), "record", "--gil", "-r", "100", "-d", str(seconds),
                             "-f", "raw", "-o", str(out), "-p", str(pid)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


_ROOT = str(Path(__file__).resolve().parent.parent) + "/"


def _frames(stack: str) -> List[str]:
    """py-spy's ``function (path:line)`` frames as ``function path``, paths relative to site-packages or here."""
    frames = []
    for frame in stack.split(";"):
        name, _, where = frame.partition(" (")
        frames.append(f"{name} {where.split(':')[0].split('site-packages/')[-1].replace(_ROOT, '')}")
    return frames


def part_of(frames: List[str]) -> str:
    """The part of a turn one sample belongs to."""
    inside = next((i for i, f in enumerate(frames) if f.startswith(HANDLE_MESSAGE)), None)
    if inside is None:
        # py-spy keeps the innermost frames of a very deep stack (Rasa's graph runs ~100 deep), so a
        # sample without Agent.handle_message may still be Rasa's: it is put where its own frames say.
        for part, patterns in PARTS:
            if any(p in f for f in frames for p in patterns):
                return part
        if any(f.split(" ", 1)[1].startswith(RASA_PROCESSING) for f in frames):
            return "rasa: the rest of a turn"
        if any(f.split(" ", 1)[1].startswith(CONNECTOR_PREFIXES) for f in frames):
            return "connector layer: input"
        return "HTTP server, event loop, other threads"
    below = frames[inside + 1:]
    for part, patterns in PARTS:
        if any(p in f for f in below for p in patterns):
            return part
    if any(f.split(" ", 1)[1].startswith(CONNECTOR_PREFIXES) for f in below):
        return "connector layer: output channel"
    return "rasa: the rest of a turn"


def shares(raw: Path) -> Dict[str, float]:
    """Share of samples per part (0..1), from py-spy's raw output."""
    counts: Dict[str, int] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            counts[part_of(_frames(stack))] += int(count)
    total = sum(counts.values()) or 1
    return {part: counts[part] / total for part in sorted(counts, key=counts.get, reverse=True)}


def connector_share(parts: Dict[str, float]) -> float:
    """The connector layer's share (input and output)."""
    return sum(v for k, v in parts.items() if k.startswith("connector layer"))


def cpu_seconds() -> Dict[int, tuple]:
    """{pid: (label, user+system CPU seconds)} of every process on the machine."""
    import psutil

    out = {}
    for proc in psutil.process_iter(["pid", "name", "cmdline", "cpu_times"]):
        try:
            args = proc.info["cmdline"] or [proc.info["name"] or "?"]
            times = proc.info["cpu_times"]
            out[proc.info["pid"]] = (_label(args), times.user + times.system)
        except Exception:  # a process that ended meanwhile
            continue
    return out


def _label(args: List[str]) -> str:
    text = " ".join(args)
    for needle, label in (("rasa run", "rasa replica"), ("threadline.action_server", "action server"),
                          ("rasa_sdk", "action server"), ("haproxy", "HAProxy"), ("redis-server", "Redis"),
                          ("threadline.event_relay", "event relay"), ("threadline.analytics", "analytics consumer"),
                          ("py-spy", "py-spy (the profiler)"), ("bench/load.py", "load client and platform stand-in")):
        if needle in text:
            return label
    return "other (" + Path(args[0]).name + ")"


def cpu_table(before: Dict[int, tuple], after: Dict[int, tuple], messages: int) -> List[tuple]:
    """[(label, CPU ms per message)] for the processes that used CPU between two snapshots."""
    per: Dict[str, float] = collections.Counter()
    for pid, (label, seconds) in after.items():
        spent = seconds - before[pid][1] if pid in before and before[pid][0] == label else seconds
        if spent > 0.05:
            per[label] += spent
    return [(label, 1000 * spent / max(1, messages)) for label, spent in
            sorted(per.items(), key=lambda item: item[1], reverse=True)]
