"""The commands a new user runs, from the project root, on a machine with no platform settings.

``rasa run`` and ``rasa shell`` (and ``make shell``'s ``python -m
threadline.stack --shell``) start with nothing but the defaults: channels
without their settings are simply off, and the conversation works.
"""
import os
import pty
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.services]


@pytest.fixture(autouse=True)
def _no_embedded_redis_outlives_a_test(tmp_path):
    # ``rasa run`` leaves the embedded Redis running on purpose (the next command
    # shares it); a test's own var/ must not keep one after the test.
    yield
    from threadline import redis_client

    if (tmp_path / "var" / "redis").exists():
        redis_client.stop_embedded(tmp_path / "var")

ROOT = Path(__file__).resolve().parents[2]
RASA = str(Path(sys.executable).parent / "rasa")
PLATFORM_PREFIXES = ("WHATSAPP_", "TELEGRAM_", "TWILIO_", "JAMBONZ_", "WEBCHAT_", "AGENT_", "RASA_AUTH", "REDIS_URL",
                     "DATABASE_URL")


def fresh_env(tmp_path):
    """What a new user's shell has: no platform settings, a var/ of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(PLATFORM_PREFIXES)}
    env.update(THREADLINE_VAR_DIR=str(tmp_path / "var"), PYTHONPATH=str(ROOT))
    return env


def wait_http(url, proc, timeout=240):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"exited with {proc.returncode}"
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                return answer.status, answer.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()
        except (urllib.error.URLError, OSError):
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer")


def stop(proc):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


class Terminal:
    """A program on a pseudo-terminal, as in a user's shell (rasa shell needs one)."""

    def __init__(self, args, env):
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, cwd=ROOT, env=env,
                                     start_new_session=True)
        os.close(slave)
        self.seen = b""

    def expect(self, text, timeout=300):
        deadline = time.monotonic() + timeout
        while text.encode() not in self.seen:
            assert time.monotonic() < deadline, self.seen[-2000:].decode(errors="replace")
            ready, _, _ = select.select([self.master], [], [], 1)
            if ready:
                try:
                    self.seen += os.read(self.master, 65536)
                except OSError:
                    break
        return self.seen.decode(errors="replace")

    def type(self, line):
        os.write(self.master, line.encode() + b"\r")

    def close(self):
        stop(self.proc)
        os.close(self.master)


def port_free(port):
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def test_rasa_run_from_the_project_root_with_no_platform_settings(tmp_path):
    port = free_port()
    proc = subprocess.Popen([RASA, "run", "--port", str(port), "--model", "models/threadline.tar.gz"], cwd=ROOT,
                            env=fresh_env(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        status, _ = wait_http(f"http://127.0.0.1:{port}/webhooks/webchat/", proc)
        assert status == 200
        status, body = wait_http(f"http://127.0.0.1:{port}/webhooks/whatsapp/", proc)
        assert status == 503 and b"WHATSAPP_APP_SECRET" in body  # off, and says what to set
    finally:
        stop(proc)


def test_make_shell_talks_in_the_terminal(tmp_path):
    env = fresh_env(tmp_path)
    env.update(ACTION_PORT=str(free_port()), RASA_PORT=str(free_port()))
    shell = Terminal([sys.executable, "-m", "threadline.stack", "--shell"], env)
    try:
        shell.expect("Your input")
        shell.type("hi")
        assert "Threadline's assistant" in shell.expect("Threadline's assistant")
        shell.type("")  # the greeting's buttons are a choice list: Enter takes the first, "Track an order"
        assert "order number" in shell.expect("order number")
        shell.type("482913")
        assert "postal code" in shell.expect("postal code")  # an anonymous terminal user steps up too
    finally:
        shell.close()


def test_plain_rasa_shell_with_rasa_run_actions(tmp_path):
    if not port_free(5055):
        pytest.skip("port 5055 is taken (a running stack?): plain `rasa run actions` needs it")
    env = fresh_env(tmp_path)
    subprocess.run([sys.executable, "-m", "threadline.db", "init", "--demo"], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    actions = subprocess.Popen([RASA, "run", "actions"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    shell = None
    try:
        wait_http("http://127.0.0.1:5055/health", actions, timeout=120)
        shell = Terminal([RASA, "shell", "--port", str(free_port()), "--model", "models/threadline.tar.gz"], env)
        shell.expect("Your input")
        shell.type("hello")
        assert "Threadline's assistant" in shell.expect("Threadline's assistant")
        shell.type("/stop")
    finally:
        if shell is not None:
            shell.close()
        stop(actions)


def leftovers(marker):
    """Processes whose command line names ``marker`` (a var/ directory of their own)."""
    found = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout.split()
    return [pid for pid in found if int(pid) != os.getpid()]


def test_stopping_make_run_twice_in_a_row_leaves_nothing_running(tmp_path):
    env = fresh_env(tmp_path)
    env.update(ACTION_PORT=str(free_port()), RASA_PORT=str(free_port()))
    run = subprocess.Popen([sys.executable, "-m", "threadline.stack"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        for line in run.stdout:
            if "Threadline is running." in line:
                break
        else:
            raise AssertionError("make run did not come up")
        run.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        run.send_signal(signal.SIGTERM)  # impatient: a second one while it is stopping
        assert run.wait(90) == 0
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while leftovers(str(tmp_path)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert leftovers(str(tmp_path)) == []  # no rasa or redis server of this run is left...
    assert port_free(int(env["RASA_PORT"])) and port_free(int(env["ACTION_PORT"]))  # ...nor the action server


def test_a_benchmark_stopped_by_sigterm_stops_its_stacks(tmp_path):
    bench = subprocess.Popen([sys.executable, "bench/voice_turn.py", "--levels", "1", "--turns", "3", "--pause", "0"],
                             cwd=ROOT, env=fresh_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, start_new_session=True)
    try:
        for line in bench.stdout:
            if "starting two stacks" in line:
                break
        time.sleep(20)  # somewhere in starting the stacks and their embedded Redis
        started = leftovers("threadline-bench-")
        bench.send_signal(signal.SIGTERM)
        bench.wait(120)
    finally:
        if bench.poll() is None:
            os.killpg(bench.pid, signal.SIGKILL)
    assert started, "the benchmark had started nothing to stop yet"
    deadline = time.monotonic() + 10
    while leftovers("threadline-bench-") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert leftovers("threadline-bench-") == []


def test_the_tracker_store_benchmark_stops_the_embedded_redis_it_started(tmp_path):
    env = fresh_env(tmp_path)
    bench = subprocess.Popen([sys.executable, "bench/tracker_store.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not leftovers(str(tmp_path)) and bench.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        started = leftovers(str(tmp_path))  # the embedded Redis is up: the benchmark is measuring
        bench.send_signal(signal.SIGTERM)
        bench.wait(120)
    finally:
        if bench.poll() is None:
            os.killpg(bench.pid, signal.SIGKILL)
    assert started, "the benchmark had not started the embedded Redis"
    deadline = time.monotonic() + 10
    while leftovers(str(tmp_path)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert leftovers(str(tmp_path)) == []
