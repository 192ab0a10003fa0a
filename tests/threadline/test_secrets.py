"""Secrets: generated and kept under var/ in development, required in production, one per purpose."""
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from threadline import settings

ROOT = Path(__file__).resolve().parents[2]
PURPOSES = tuple(settings._DERIVED)


def fresh(tmp_path, **env):
    """Settings as a process with only ``env`` (and a var/ of its own) would see them."""
    return settings.Settings({"THREADLINE_VAR_DIR": str(tmp_path / "var"), **env})


def test_development_generates_one_master_key_and_keeps_it(tmp_path):
    first = fresh(tmp_path)
    secrets = {purpose: first.secret(purpose) for purpose in PURPOSES}
    key_file = tmp_path / "var" / "secret.key"
    assert key_file.exists() and stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(key_file.read_text().strip()) == 64
    # Another process of the same stack derives the same secrets...
    assert {purpose: fresh(tmp_path).secret(purpose) for purpose in PURPOSES} == secrets
    # ...each purpose its own, none of them the master key itself.
    assert len(set(secrets.values())) == len(PURPOSES)
    assert key_file.read_text().strip() not in secrets.values()


def test_another_var_dir_is_another_deployment(tmp_path):
    assert fresh(tmp_path / "a").secret("metadata_key") != fresh(tmp_path / "b").secret("metadata_key")


def test_production_fails_closed_without_a_master_key(tmp_path):
    production = fresh(tmp_path, THREADLINE_ENV="production")
    for purpose in PURPOSES:
        with pytest.raises(settings.SettingsError, match="THREADLINE_SECRET_KEY is required"):
            production.secret(purpose)
    assert not (tmp_path / "var" / "secret.key").exists()  # nothing generated


def test_a_short_master_key_is_refused(tmp_path):
    with pytest.raises(settings.SettingsError, match="at least 32 characters"):
        fresh(tmp_path, THREADLINE_SECRET_KEY="hunter2").secret("metadata_key")


def test_a_configured_master_key_is_used_and_a_purpose_may_have_its_own(tmp_path):
    key = "k" * 40
    a = fresh(tmp_path, THREADLINE_SECRET_KEY=key, THREADLINE_ENV="production")
    b = fresh(tmp_path / "other", THREADLINE_SECRET_KEY=key)
    assert a.secret("metadata_key") == b.secret("metadata_key")  # derived from the key, not from var/
    variable = settings._DERIVED["metadata_key"]
    own = fresh(tmp_path, THREADLINE_SECRET_KEY=key, **{variable: "its-own-metadata-key"})
    assert own.secret("metadata_key") == "its-own-metadata-key"
    with pytest.raises(KeyError):
        a.secret("no-such-purpose")


def test_cors_may_never_be_everyone(tmp_path):
    with pytest.raises(settings.SettingsError, match="may not be"):
        fresh(tmp_path, THREADLINE_CORS_ORIGINS="*").cors_origins


@pytest.mark.services
def test_make_run_in_production_without_a_key_stops_with_the_reason(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "THREADLINE_SECRET_KEY"}
    env.update(THREADLINE_ENV="production", THREADLINE_VAR_DIR=str(tmp_path / "var"), PYTHONPATH=str(ROOT))
    run = subprocess.run([sys.executable, "-m", "threadline.stack"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode != 0
    assert "THREADLINE_SECRET_KEY is required" in run.stdout + run.stderr
    assert not (tmp_path / "var" / "secret.key").exists()
