"""Start the whole stack: Redis, business DB, action server and rasa server.

``python -m threadline.stack`` is what ``make run`` calls. With no ``REDIS_URL``
it starts the embedded redis-server; with no ``DATABASE_URL`` it uses SQLite
under var/. It initialises the business database (schema, demo data), starts
the action server (loopback, token-guarded) and the rasa server with
credentials.yml (a channel without its settings is simply off), says which
channels are on, prints how to talk to the bot, and stops everything cleanly
on Ctrl-C or SIGTERM, however often they come. Tests use the same ``Stack``.

The stack never reuses a server it did not start unless it runs the same code
and configuration (the action server's fingerprint), and says so.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import yaml

from threadline import redis_client
from threadline import settings as settings_module

RASA_BIN = str(Path(sys.executable).parent / "rasa")


def channel_status(credentials_path: Path, config: settings_module.Settings) -> Tuple[List[str], Dict[str, List[str]]]:
    """(channels on, {channel off: settings to set}) for the channels of credentials.yml."""
    raw = yaml.safe_load(credentials_path.read_text()) or {}
    on, off = [], {}
    for path, credentials in raw.items():
        module, _, name = path.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module), name) if module else None
        except (ImportError, AttributeError):
            cls = None
        env = getattr(cls, "credential_env", None)
        if not env:
            on.append(path)
            continue
        defaults = getattr(cls, "credential_defaults", {})
        credentials = credentials or {}
        missing = [var for key, var in env.items()
                   if key not in defaults and not credentials.get(key) and not config.get_raw(var)]
        (off.__setitem__(path, missing) if missing else on.append(path))
    return on, off


def _wait_http(url: str, timeout: float, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text()[-3000:] if log.exists() else ""
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}; last log lines:\n{tail}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.25)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f}s; see {log}")


def _get_json(url: str) -> Optional[dict]:
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            return json.loads(reply.read() or b"{}") if reply.status == 200 else None
    except (urllib.error.URLError, ConnectionError, OSError, ValueError):
        return None


class Stack:
    """The action server and rasa server as child processes, with their configuration."""

    def __init__(
        self,
        model: str = "models/threadline.tar.gz",
        rasa_port: Optional[int] = None,
        action_port: Optional[int] = None,
        env: Optional[Dict[str, str]] = None,
        credentials: str = "credentials.yml",
        endpoints: str = "endpoints.yml",
    ) -> None:
        self.root = settings_module.PROJECT_ROOT
        self.model = str(self.root / model)
        environ = {**settings_module.process_environment(), **(env or {})}
        base = settings_module.Settings(environ)
        self.rasa_port = rasa_port or base.integer("RASA_PORT")
        self.action_port = action_port or base.integer("ACTION_PORT")
        environ.update(RASA_PORT=str(self.rasa_port), ACTION_PORT=str(self.action_port))
        environ.setdefault("ACTION_SERVER_URL", f"http://127.0.0.1:{self.action_port}/webhook")
        self.env = environ
        self.settings = settings_module.Settings(environ)
        self.credentials_path = self.root / credentials
        self.endpoints_path = self.root / endpoints
        self.processes: List[subprocess.Popen] = []
        self.channels_on: List[str] = []
        self.channels_off: Dict[str, List[str]] = {}
        self.started_redis = False
        self.reused_actions = False
        self.log_dir = self.settings.var_dir / "run"
        # What answers once the rasa server is up with its channels (a stack without the web chat sets "/").
        self.ready_path = "/webhooks/webchat/"

    @property
    def rasa_url(self) -> str:
        """Where the rasa server answers."""
        return f"http://127.0.0.1:{self.rasa_port}"

    @property
    def action_url(self) -> str:
        """Where the action server answers."""
        return f"http://127.0.0.1:{self.action_port}"

    def _prepare(self, init_db: bool = True) -> Path:
        """Redis, the business database, the generated endpoints file; returns its path."""
        if not self.settings.redis_url:
            # Stop it on the way out only if this stack started it: another stack (or a test session)
            # on the same var/ directory may be using it.
            self.started_redis = not redis_client.embedded_running(self.settings.var_dir)
            self.env["REDIS_URL"] = redis_client.embedded_url(self.settings.var_dir)
            self.settings = settings_module.Settings(self.env)
        self.settings.secret("id_pepper")  # generate var/secret.key once, before the children race for it
        self._prepare_metrics()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if init_db:
            subprocess.run([sys.executable, "-m", "threadline.db", "init", "--demo"], cwd=self.root, env=self.env,
                           check=True, stdout=subprocess.DEVNULL)
        self.channels_on, self.channels_off = channel_status(self.credentials_path, self.settings)
        endpoints_config = yaml.safe_load(self.endpoints_path.read_text())
        endpoints_config["action_endpoint"]["url"] = self.settings.action_server_url
        endpoints = self.log_dir / f"endpoints-{self.rasa_port}.yml"
        endpoints.write_text(yaml.safe_dump(endpoints_config, sort_keys=False))
        return endpoints

    def _prepare_metrics(self) -> None:
        """Every child writes its metrics to one directory, set before it imports prometheus_client.

        The files of processes that are gone (a previous run's) are deleted
        first, so a new process never inherits a dead one's counts.
        """
        from threadline import metrics

        directory = self.settings.metrics_dir
        self.env.update({"METRICS_DIR": str(directory), metrics.MULTIPROC_ENV: str(directory)})
        self.settings = settings_module.Settings(self.env)
        metrics.clear_dead(directory)

    def _spawn(self, args: List[str], log_name: str) -> Tuple[subprocess.Popen, Path]:
        log = self.log_dir / log_name
        handle = open(log, "w")
        proc = subprocess.Popen(
            args, cwd=self.root, env=self.env, stdout=handle, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes.append(proc)
        return proc, log

    def start_actions(self) -> None:
        """Start the action server and wait until it answers.

        One already listening on the port is reused only if it runs this very
        code and configuration; otherwise the start fails saying why.
        """
        running = _get_json(f"{self.action_url}/threadline")
        if running is not None or _get_json(f"{self.action_url}/health") is not None:
            from threadline.action_server import fingerprint

            if running and running.get("fingerprint") == fingerprint(self.settings, self.root):
                self.reused_actions = True
                print(f"Reusing the action server already running on port {self.action_port} "
                      "(same code and configuration).", flush=True)
                return
            raise RuntimeError(
                f"Port {self.action_port} has an action server that runs other code or configuration. "
                f"Stop it, or set ACTION_PORT to a free port."
            )
        proc, log = self.spawn_actions(self.action_port)
        _wait_http(f"{self.action_url}/health", 120, proc, log)

    def spawn_actions(self, port: int) -> Tuple[subprocess.Popen, Path]:
        """Start one action server on ``port`` (without waiting for it)."""
        return self._spawn([sys.executable, "-m", "threadline.action_server", "--port", str(port)],
                           f"actions-{port}.log")

    def start_relay(self, number: int = 1) -> None:
        """The event relay (``threadline.event_relay``), unless ``EVENT_STREAM`` is off.

        The first also brings the analytics consumer (``threadline.analytics.consumer``), which reads
        what the relays publish.
        """
        if self.settings.flag("EVENT_STREAM"):
            self._spawn([sys.executable, "-m", "threadline.event_relay"], f"relay-{self.rasa_port}-{number}.log")
            if number == 1:
                self._spawn([sys.executable, "-m", "threadline.analytics.consumer"],
                            f"analytics-{self.rasa_port}.log")

    def rasa_args(self, endpoints: Path) -> List[str]:
        """The ``rasa run`` command line: the HTTP API only with a token, CORS only from the allowlist."""
        args = [
            RASA_BIN, "run", "--interface", self.settings.get("THREADLINE_HOST"),
            "--port", str(self.rasa_port), "--model", self.model,
            "--credentials", str(self.credentials_path), "--endpoints", str(endpoints),
        ]
        token = self.settings.get_raw("RASA_AUTH_TOKEN")
        if token:
            args += ["--enable-api", "--auth-token", token]
            if self.settings.get_raw("RASA_JWT_SECRET"):
                args += ["--jwt-secret", self.settings.get_raw("RASA_JWT_SECRET")]
        origins = self.settings.cors_origins
        if origins:
            args += ["--cors", *origins]
        return args

    def start(self, with_rasa: bool = True, with_actions: bool = True, init_db: bool = True) -> "Stack":
        """Start everything; raises with the failing server's log if one dies.

        ``with_actions=False, init_db=False`` is one rasa replica of a
        deployment whose action servers and schema are run on their own.
        """
        endpoints = self._prepare(init_db=init_db)
        self.endpoints_file = endpoints
        try:
            if with_actions:
                self.start_actions()
                self.start_relay()
            if with_rasa:
                proc, log = self._spawn(self.rasa_args(endpoints), f"rasa-{self.rasa_port}.log")
                _wait_http(f"{self.rasa_url}{self.ready_path}", 240, proc, log)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the servers (and the embedded Redis this stack started); safe to call again."""
        with _signals_deferred():
            for proc in reversed(self.processes):
                if proc.poll() is None:
                    try:
                        os.killpg(proc.pid, signal.SIGTERM)
                    except ProcessLookupError:
                        pass
            for proc in reversed(self.processes):
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    proc.wait()
            self._mark_dead(self.processes)
            self.processes.clear()
            if self.started_redis:
                redis_client.stop_embedded(self.settings.var_dir)
                self.started_redis = False

    def _mark_dead(self, processes: List[subprocess.Popen]) -> None:
        """Stopped children's live gauges leave the metrics (their counters stay until the next start)."""
        if not processes or not self.env.get("METRICS_DIR"):
            return
        from threadline import metrics

        for proc in processes:
            metrics.mark_dead(proc.pid, Path(self.env["METRICS_DIR"]))

    def __enter__(self) -> "Stack":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class _signals_deferred:
    """Hold SIGINT/SIGTERM while stopping, so a second Ctrl-C cannot leave a server running."""

    def __enter__(self) -> None:
        self._saved = {}
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._saved[sig] = signal.signal(sig, signal.SIG_IGN)
        except ValueError:  # not the main thread: nothing to defer
            self._saved = {}

    def __exit__(self, *exc) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)


def _banner(stack: Stack) -> str:
    api = "HTTP API on (token)" if stack.settings.get_raw("RASA_AUTH_TOKEN") else "HTTP API off"
    lines = [
        "",
        "Threadline is running.",
        f"  rasa server    {stack.rasa_url}   ({api})",
        f"  action server  {stack.action_url}   (answers the rasa server only)",
        f"  redis          {'embedded, var/redis/' if stack.started_redis else 'REDIS_URL'}",
        f"  database       {'SQLite, var/threadline.db' if not stack.settings.get_raw('DATABASE_URL') else 'DATABASE_URL'}",
        "  channels on:   " + ", ".join(stack.channels_on),
    ]
    for channel, missing in stack.channels_off.items():
        lines.append(f"  channel off:   {channel} (set {', '.join(missing)})")
    lines += [
        "",
        "Talk to it:",
        f"  web chat: open {stack.rasa_url}/webhooks/webchat/",
        f"  or: SENDER=$(curl -s -X POST {stack.rasa_url}/webhooks/webchat/session | python3 -c "
        "'import json,sys; print(json.load(sys.stdin)[\"sender\"])')",
        f"      curl -s {stack.rasa_url}/webhooks/webchat/webhook -H 'Content-Type: application/json' "
        "-d \"{\\\"sender\\\": \\\"$SENDER\\\", \\\"message\\\": \\\"where is my order 482913\\\"}\"",
        "",
        "Ctrl-C stops everything.",
        "",
    ]
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``make run`` and ``make shell``."""
    config = settings_module.get()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shell", action="store_true", help="open rasa shell instead of the server")
    parser.add_argument("--rasa-port", type=int, default=config.integer("RASA_PORT"))
    parser.add_argument("--action-port", type=int, default=config.integer("ACTION_PORT"))
    parser.add_argument("--only", choices=["rasa"],
                        help="run the rasa server alone (a replica: ACTION_SERVER_URL, REDIS_URL and "
                             "DATABASE_URL point at shared servers; the schema is made by `python -m threadline.db init`)")
    args = parser.parse_args(argv)
    stack = Stack(rasa_port=args.rasa_port, action_port=args.action_port)
    if args.shell:
        signal.signal(signal.SIGTERM, _raise_interrupt)
        try:
            stack.start(with_rasa=False)
            return subprocess.call(
                [RASA_BIN, "shell", "--model", stack.model, "--endpoints", str(stack.endpoints_file),
                 "--port", str(stack.rasa_port)],
                cwd=stack.root, env=stack.env,
            )
        except KeyboardInterrupt:
            return 0
        except RuntimeError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        finally:
            stack.stop()
    if args.only == "rasa":
        return serve(stack, lambda: stack.start(with_actions=False, init_db=False), lambda: _banner(stack))
    return serve(stack, stack.start, lambda: _banner(stack))


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def serve(stack: Stack, start: Callable[[], object], banner: Callable[[], str]) -> int:
    """Start ``stack`` (with ``start``), print ``banner()``, run until a server dies or SIGTERM / Ctrl-C.

    Whatever happens, everything the stack started is stopped. The entry point
    of ``make run`` and ``make cluster``.
    """
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        start()
        print(banner(), flush=True)
        while all(p.poll() is None for p in stack.processes):
            time.sleep(0.5)
        print("A server stopped unexpectedly; see var/run/*.log", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nStopping Threadline...", flush=True)
        return 0
    except (RuntimeError, subprocess.CalledProcessError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
