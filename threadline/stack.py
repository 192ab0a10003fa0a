"""Start the whole stack: Redis, business DB, action server and rasa server.

``python -m threadline.stack`` is what ``make run`` calls. With no ``REDIS_URL``
it starts the embedded redis-server; with no ``DATABASE_URL`` it uses SQLite
under var/. It enables every channel in credentials.yml whose environment
variables are all set, says which are on, prints how to talk to the bot, and
stops everything cleanly on Ctrl-C. Tests use the same ``Stack`` class.
"""
import argparse
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import yaml

from threadline import redis_client, settings

ENV_REF = re.compile(r"\$\{(\w+)\}")
RASA_BIN = str(Path(sys.executable).parent / "rasa")


def active_credentials(path: Path, environ: Dict[str, str]) -> Tuple[dict, List[str], Dict[str, List[str]]]:
    """The channels of ``path`` whose ``${VAR}`` references are all set.

    Returns (credentials to use, channels on, {channel off: missing variables}).
    """
    raw = yaml.safe_load(path.read_text()) or {}
    enabled, on, off = {}, [], {}
    for channel, config in raw.items():
        missing = sorted({v for v in ENV_REF.findall(yaml.safe_dump(config)) if not environ.get(v)})
        if missing:
            off[channel] = missing
        else:
            enabled[channel] = config
            on.append(channel)
    return enabled, on, off


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


class Stack:
    """The action server and rasa server as child processes, with their config."""

    def __init__(
        self,
        model: str = "models/threadline.tar.gz",
        rasa_port: int = 5005,
        action_port: int = 5055,
        env: Optional[Dict[str, str]] = None,
        credentials: str = "credentials.yml",
        endpoints: str = "endpoints.yml",
    ) -> None:
        self.root = settings.PROJECT_ROOT
        self.model = str(self.root / model)
        self.rasa_port = rasa_port
        self.action_port = action_port
        self.env = {**settings.DEFAULTS, **os.environ, **(env or {})}
        self.credentials_path = self.root / credentials
        self.endpoints_path = self.root / endpoints
        self.processes: List[subprocess.Popen] = []
        self.channels_on: List[str] = []
        self.channels_off: Dict[str, List[str]] = {}
        self.started_redis = False
        self.reused_actions = False

    @property
    def rasa_url(self) -> str:
        return f"http://127.0.0.1:{self.rasa_port}"

    @property
    def action_url(self) -> str:
        return f"http://127.0.0.1:{self.action_port}"

    def _prepare(self) -> Tuple[Path, Path]:
        saved = dict(os.environ)
        os.environ.update(self.env)
        try:
            if not settings.redis_url_from_env():
                self.started_redis = True
            self.env["REDIS_URL"] = redis_client.redis_url()
            from threadline.db import ensure_ready

            ensure_ready()
            run_dir = settings.var_dir() / "run"
        finally:
            os.environ.clear()
            os.environ.update(saved)
        run_dir.mkdir(parents=True, exist_ok=True)
        creds, self.channels_on, self.channels_off = active_credentials(self.credentials_path, self.env)
        credentials = run_dir / f"credentials-{self.rasa_port}.yml"
        credentials.write_text(yaml.safe_dump(creds, sort_keys=False))
        endpoints_config = yaml.safe_load(self.endpoints_path.read_text())
        endpoints_config["action_endpoint"]["url"] = f"{self.action_url}/webhook"
        endpoints = run_dir / f"endpoints-{self.rasa_port}.yml"
        endpoints.write_text(yaml.safe_dump(endpoints_config, sort_keys=False))
        self.log_dir = run_dir
        return credentials, endpoints

    def _spawn(self, args: List[str], log_name: str) -> Tuple[subprocess.Popen, Path]:
        log = self.log_dir / log_name
        handle = open(log, "w")
        proc = subprocess.Popen(
            args, cwd=self.root, env=self.env, stdout=handle, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes.append(proc)
        return proc, log

    def start_actions(self, endpoints: Path) -> None:
        """Start the action server and wait until it answers (reuse one already running)."""
        try:
            with urllib.request.urlopen(f"{self.action_url}/health", timeout=2) as reply:
                if reply.status == 200:
                    self.reused_actions = True
                    return
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        proc, log = self._spawn(
            [RASA_BIN, "run", "actions", "--actions", "actions", "--port", str(self.action_port)],
            f"actions-{self.action_port}.log",
        )
        _wait_http(f"{self.action_url}/health", 120, proc, log)

    def start(self, with_rasa: bool = True) -> "Stack":
        """Start everything; raises with the failing server's log if one dies."""
        credentials, endpoints = self._prepare()
        self.endpoints_file = endpoints
        try:
            self.start_actions(endpoints)
            if with_rasa:
                proc, log = self._spawn(
                    [
                        RASA_BIN, "run", "--enable-api", "--cors", "*",
                        "--port", str(self.rasa_port), "--model", self.model,
                        "--credentials", str(credentials), "--endpoints", str(endpoints),
                    ],
                    f"rasa-{self.rasa_port}.log",
                )
                _wait_http(f"{self.rasa_url}/status", 240, proc, log)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the servers (and the embedded Redis this stack started)."""
        for proc in reversed(self.processes):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in reversed(self.processes):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.processes.clear()
        if self.started_redis:
            saved = dict(os.environ)
            os.environ.update({k: v for k, v in self.env.items() if k != "REDIS_URL"})
            os.environ.pop("REDIS_URL", None)
            try:
                redis_client.stop_embedded()
            finally:
                os.environ.clear()
                os.environ.update(saved)

    def __enter__(self) -> "Stack":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _banner(stack: Stack) -> str:
    lines = [
        "",
        "Threadline is running.",
        f"  rasa server    {stack.rasa_url}   (REST, HTTP API)",
        f"  action server  {stack.action_url}",
        f"  redis          {'embedded, var/redis/' if stack.started_redis else stack.env['REDIS_URL']}",
        f"  database       {'SQLite, var/threadline.db' if not stack.env.get('DATABASE_URL') else 'DATABASE_URL'}",
        "  channels on:   " + ", ".join(stack.channels_on),
    ]
    for channel, missing in stack.channels_off.items():
        lines.append(f"  channel off:   {channel} (set {', '.join(missing)})")
    lines += [
        "",
        "Talk to it:",
        f"  curl -s {stack.rasa_url}/webhooks/rest/webhook -H 'Content-Type: application/json' "
        "-d '{\"sender\": \"me\", \"message\": \"where is my order 482913\"}'",
    ]
    if any(c.endswith("WebchatInput") for c in stack.channels_on):
        lines.append(f"  web chat: open {stack.rasa_url}/webhooks/webchat/")
    lines += ["", "Ctrl-C stops everything.", ""]
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``make run`` and ``make shell``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shell", action="store_true", help="open rasa shell instead of the server")
    parser.add_argument("--rasa-port", type=int, default=int(settings.env("RASA_PORT", "5005")))
    parser.add_argument("--action-port", type=int, default=int(settings.env("ACTION_PORT", "5055")))
    args = parser.parse_args(argv)
    stack = Stack(rasa_port=args.rasa_port, action_port=args.action_port)
    stopping = []

    def _stop(signum, frame):
        stopping.append(signum)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    try:
        if args.shell:
            stack.start(with_rasa=False)
            return subprocess.call(
                [RASA_BIN, "shell", "--model", stack.model, "--endpoints", str(stack.endpoints_file)],
                cwd=stack.root, env=stack.env,
            )
        stack.start()
        print(_banner(stack), flush=True)
        while all(p.poll() is None for p in stack.processes):
            time.sleep(0.5)
        print("A server stopped unexpectedly; see var/run/*.log", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nStopping Threadline...", flush=True)
        return 0
    finally:
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
