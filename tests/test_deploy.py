"""deploy/ stays valid: the compose description, its HAProxy configuration and its Dockerfile.

No Docker engine runs here, so the check is what can go stale without one:
every setting the services pass is one Threadline reads, every command's
module and arguments are accepted, and the balancer's configuration is the one
``threadline.cluster`` renders and HAProxy itself accepts.
"""
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from threadline import settings
from threadline.cluster import compose_haproxy_config

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
COMPOSE = yaml.safe_load((DEPLOY / "compose.yml").read_text())
SERVICES = COMPOSE["services"]
THREADLINE_SERVICES = [name for name, service in SERVICES.items() if service.get("image") == "threadline:latest"]
# Variables compose itself needs that are not Threadline settings.
COMPOSE_ONLY = {"POSTGRES_PASSWORD", "RABBITMQ_PASSWORD"}


def test_the_same_processes_as_make_cluster():
    assert {"redis", "postgres", "rabbitmq", "schema", "actions", "rasa", "relay", "analytics", "haproxy"} <= set(SERVICES)
    assert set(THREADLINE_SERVICES) == {"schema", "actions", "rasa", "relay", "analytics"}


@pytest.mark.parametrize("name", THREADLINE_SERVICES)
def test_every_setting_a_service_passes_is_one_threadline_reads(name):
    unknown = set(SERVICES[name]["environment"]) - set(settings.VARIABLES)
    assert not unknown, f"{name} passes settings nobody reads: {sorted(unknown)}"


def test_every_variable_the_file_asks_for_is_documented():
    asked = set(re.findall(r"\$\{([A-Z_]+)", (DEPLOY / "compose.yml").read_text()))
    assert asked - COMPOSE_ONLY <= set(settings.VARIABLES)
    assert {"THREADLINE_SECRET_KEY", "POSTGRES_PASSWORD", "RABBITMQ_PASSWORD"} <= asked  # required, never defaulted


@pytest.mark.parametrize("name", THREADLINE_SERVICES)
def test_every_command_runs_a_module_that_accepts_its_arguments(name):
    command = SERVICES[name]["command"]
    assert command[:2] == ["python", "-m"]
    # argparse reads the arguments in order: a wrong one fails before --help answers.
    done = subprocess.run([sys.executable, "-m", *command[2:], "--help"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_the_replicas_share_one_secret_key_and_real_servers():
    env = SERVICES["rasa"]["environment"]
    assert env["REDIS_URL"].startswith("redis://redis:")
    assert env["DATABASE_URL"].startswith("postgresql://")
    assert env["RABBITMQ_URL"].startswith("amqp://") and "rabbitmq:5672" in env["RABBITMQ_URL"]
    assert ":?" in env["THREADLINE_SECRET_KEY"]  # compose refuses to start without it
    assert env["ACTION_SERVER_URL"] == "http://haproxy:5055/webhook"
    assert SERVICES["actions"]["environment"]["ACTION_HOST"] == "0.0.0.0"


def test_the_balancer_configuration_is_rendered_from_the_cluster_template():
    assert (DEPLOY / "haproxy.compose.cfg").read_text() == compose_haproxy_config(), \
        "run: python -m threadline.cluster --compose-config > deploy/haproxy.compose.cfg"


def test_haproxy_accepts_both_configurations(tmp_path):
    haproxy = shutil.which("haproxy") or ("/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None)
    if haproxy is None:
        pytest.skip("haproxy is not installed (make tools)")
    from threadline.cluster import haproxy_config

    local = tmp_path / "local.cfg"
    local.write_text(haproxy_config("127.0.0.1", 15005, [15006, 15007], 15055, [15056, 15057]))
    for config in (local, DEPLOY / "haproxy.compose.cfg"):
        checked = subprocess.run([haproxy, "-c", "-f", str(config)], capture_output=True, text=True, timeout=60)
        assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_image_installs_the_lock_and_trains_at_build_time():
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "FROM python:3.10" in dockerfile
    assert "-r requirements.lock" in dockerfile and "pip check" in dockerfile
    assert "rasa train" in dockerfile
