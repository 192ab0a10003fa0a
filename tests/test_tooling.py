"""The two commands' plumbing: finding Python 3.10, and the lock of exact versions."""
import subprocess
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_python_310_is_found_without_help():
    out = subprocess.run([str(ROOT / "scripts/find_python.sh")], capture_output=True, text=True, check=True)
    found = out.stdout.strip()
    version = subprocess.run([found, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True)
    assert version.stdout.strip() == "(3, 10)"


def test_missing_python_310_fails_with_a_clear_message(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    out = subprocess.run([str(ROOT / "scripts/find_python.sh")], capture_output=True, text=True, env=env)
    assert out.returncode == 1
    assert "needs Python 3.10" in out.stderr and "pyenv install" in out.stderr


def lock():
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"not an exact pin: {line}"
            pins[name.lower().replace("_", "-")] = version
    return pins


def test_lock_pins_every_installed_package_exactly():
    pins = lock()
    assert pins["rasa"] == "3.6.21" and pins["rasa-sdk"] == "3.6.2"
    assert pins["sanic"].startswith("21.12.") and pins["sqlalchemy"].startswith("1.4.")
    assert pins["redis"].startswith("4.")
    # rasa 3.6's socketio channel needs the sync enter_room of python-socketio < 5.9
    assert pins["python-socketio"] == "5.8.0" and pins["python-engineio"] == "4.5.1"
    for name, version in pins.items():
        assert metadata.version(name) == version, name


def test_installed_set_is_consistent():
    out = subprocess.run([str(ROOT / ".venv/bin/python"), "-m", "pip", "check"], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_socketio_rooms_are_entered_synchronously():
    import inspect

    import socketio

    assert not inspect.iscoroutinefunction(socketio.AsyncServer.enter_room)
