"""Every setting Threadline reads, in one place, read once from the environment.

``VARIABLES`` is the registry: each environment variable with its default,
what it is for and whether it is a secret. The README's configuration table is
generated from it (``python -m threadline.settings --markdown``; a test keeps
the two in step), and no other module reads ``os.environ``.

``get()`` is the process's ``Settings``: a snapshot taken on first use and
passed to whatever needs it. ``reload()`` takes a new snapshot (tests that
change the environment do; so does nothing else at run time). A ``Settings``
can also be built from any mapping (``Settings(environ)``), which is how the
stack launcher describes the processes it starts without touching its own
environment.

Secrets (``secret("id_pepper")``) come from their own variable, else are
derived from ``THREADLINE_SECRET_KEY``, else from a key generated on first run
and kept in ``var/secret.key`` (mode 0600), so a development machine needs no
setup and every process of one stack agrees. With ``THREADLINE_ENV=production``
a missing ``THREADLINE_SECRET_KEY`` is an error: production fails closed.
"""
from __future__ import annotations

import argparse
import fcntl
import hashlib
import hmac
import os
import secrets as _secrets
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Variable:
    """One environment variable: its default, group and meaning."""

    name: str
    default: Optional[str]
    help: str
    group: str
    secret: bool = False


def _vars(group: str, *specs: Tuple) -> List[Variable]:
    return [Variable(spec[0], spec[1], spec[2], group, *spec[3:]) for spec in specs]


# README order. A default of None means "unset" (the feature is off, or the
# embedded default is used); the help text says what unset means.
_REGISTRY: List[Variable] = [
    *_vars(
        "Infrastructure",
        ("REDIS_URL", None, "Redis for the tracker and lock stores, identity index, dedupe and live updates; unset: an embedded redis-server under `var/redis/`"),
        ("DATABASE_URL", None, "business database (SQLAlchemy URL); unset: SQLite at `var/threadline.db`"),
        ("RABBITMQ_URL", None, "RabbitMQ (`amqp://user:password@host:5672/vhost`) for the conversation event stream, through Rasa's `PikaEventBroker` with publisher confirms; unset: events go to the `events` table of the business database (Rasa's `SQLEventBroker`)"),
        ("EVENT_QUEUE", "threadline_events", "durable RabbitMQ queue bound to the event exchange (`rasa-exchange`)"),
        ("EVENT_STREAM", "on", "`off`: conversation events are not streamed to any broker (no outbox in Redis, no relay)"),
        ("THREADLINE_VAR_DIR", None, "where local state lives (embedded Redis, SQLite, generated secret, logs); unset: `var/`"),
        ("THREADLINE_KEY_PREFIX", "threadline", "prefix of every Redis key (alphanumeric)"),
        ("THREADLINE_ENV", "development", "`production` makes every secret required (nothing is generated) and marks cookies Secure"),
        ("TRACING", "off", "OpenTelemetry traces of every turn: `off`, `otlp` (OTLP over HTTP, configured by the standard `OTEL_EXPORTER_OTLP_*` variables, which the exporter reads itself) or `console` (printed)"),
        ("TRACING_SERVICE_NAME", "threadline", "the traces' `service.name`: the rasa server reports as `<name>-rasa`, the action server as `<name>-actions`"),
    ),
    *_vars(
        "Servers and trust boundary",
        ("THREADLINE_HOST", "127.0.0.1", "interface the rasa server listens on (`0.0.0.0` to accept platform webhooks directly)"),
        ("RASA_PORT", "5005", "rasa server port"),
        ("ACTION_HOST", "127.0.0.1", "interface the action server listens on; anything but loopback needs `ACTION_SERVER_TOKEN`"),
        ("ACTION_PORT", "5055", "action server port"),
        ("ACTION_SERVER_URL", None, "where the rasa server reaches the action server; unset: `http://127.0.0.1:$ACTION_PORT/webhook`"),
        ("ACTION_SERVER_TOKEN", None, "shared secret the rasa server sends to the action server on every call; unset: derived from the secret key", True),
        ("RASA_AUTH_TOKEN", None, "turns Rasa's HTTP API (`/conversations`, `/model`, ...) on, guarded by this token; unset: the API is off", True),
        ("RASA_JWT_SECRET", None, "also accept JWTs signed with this secret on the HTTP API (needs `RASA_AUTH_TOKEN`)", True),
        ("THREADLINE_CORS_ORIGINS", None, "comma-separated origins allowed to call the server from a browser (the web chat widget on another site); unset: same origin only"),
        ("THREADLINE_TRUSTED_PROXIES", None, "comma-separated addresses or networks of reverse proxies whose `X-Forwarded-For` / `X-Forwarded-Proto` are believed; unset: none"),
        ("THREADLINE_SECRET_KEY", None, "master secret; every other secret not set on its own is derived from it; unset (development only): generated into `var/secret.key`", True),
        ("THREADLINE_ID_PEPPER", None, "HMAC key that hashes phone numbers and platform user ids in Redis key names; unset: derived from the secret key", True),
        ("THREADLINE_METADATA_KEY", None, "signs the trusted part of each message's metadata, which only the connector pipeline writes; unset: derived from the secret key", True),
        ("THREADLINE_VAULT_KEY", None, "AES-GCM key of the token vault (emails and phone numbers behind tokens) and of the erasure list's HMACs; unset: derived from the secret key", True),
    ),
    *_vars(
        "Limits",
        ("MAX_BODY_BYTES", "262144", "largest request body any route accepts (413 above it)"),
        ("RATE_LIMIT_PER_SOURCE", "1200", "requests per minute one client address may make to the webhooks and the web chat (429 above it)"),
        ("RATE_LIMIT_PER_SENDER", "60", "messages per minute one channel user may send"),
        ("RATE_LIMIT_SIGN_IN", "20", "desk sign-in attempts per minute from one address"),
        ("LINK_FAIL_LIMIT", "5", "failed link codes per channel user (and per source address) per 10 minutes"),
        ("LINK_GLOBAL_FAIL_LIMIT", "100", "failed link codes across everyone per 10 minutes before redemption pauses"),
        ("STEPUP_FAIL_LIMIT", "3", "wrong step-up answers (postal code, booking email) per order or appointment, per source, before it is locked"),
        ("STEPUP_LOCK_SECONDS", "900", "how long a locked step-up stays locked"),
        ("CONTINUITY_WINDOW_HOURS", "24", "how long after a task the greeting still names it (\"Welcome back! Last time on WhatsApp we were ...\")"),
        ("DEDUPE_TTL_SECONDS", "604800", "how long a platform message id is remembered as delivered (Meta retries for up to 7 days)"),
    ),
    *_vars(
        "Outbound",
        ("OUTBOUND_MAX_ATTEMPTS", "4", "attempts per outbound request"),
        ("OUTBOUND_RETRY_BASE_DELAY", "0.2", "first retry delay in seconds (doubles per attempt)"),
        ("OUTBOUND_RETRY_MAX_DELAY", "30", "longest wait between attempts; a longer `Retry-After` is not retried"),
        ("OUTBOUND_TIMEOUT", "10", "seconds per attempt"),
        ("OUTBOUND_FAILED_TTL_DAYS", "7", "how long undelivered messages are kept for `make replay-failed`"),
    ),
    *_vars(
        "Consent and personal data",
        ("CONSENT_WORDING_VERSION", "2024-06", "version of the opt-out, opt-in and notice wording, recorded with every consent change"),
        ("VAULT_TTL_SECONDS", "2592000", "how long a tokenized email or phone number stays resolvable (30 days)"),
        ("VOICE_RECORDING", "off", "`on` records Twilio calls, always after the recording notice; `off` records nothing"),
        ("VOICE_RECORDING_NOTICE", "This call may be recorded for quality and training.", "what callers hear before any recording starts"),
    ),
    *_vars(
        "WhatsApp Cloud API",
        ("WHATSAPP_VERIFY_TOKEN", None, "webhook subscription verify token", True),
        ("WHATSAPP_APP_SECRET", None, "app secret that signs webhooks (`X-Hub-Signature-256`)", True),
        ("WHATSAPP_ACCESS_TOKEN", None, "Graph API access token", True),
        ("WHATSAPP_PHONE_NUMBER_ID", None, "the business number's id"),
        ("WHATSAPP_API_BASE", "https://graph.facebook.com/v21.0", "Graph API base URL (tests point it at a recorder)"),
        ("WHATSAPP_TEMPLATE_NAME", "threadline_follow_up", "template sent outside the 24-hour window"),
        ("WHATSAPP_TEMPLATE_LANGUAGE", "en_US", "that template's language"),
        ("WHATSAPP_WINDOW_SECONDS", "86400", "length of the customer-service window"),
    ),
    *_vars(
        "Telegram",
        ("TELEGRAM_BOT_TOKEN", None, "Bot API token", True),
        ("TELEGRAM_SECRET_TOKEN", None, "`secret_token` given to `setWebhook`", True),
        ("TELEGRAM_API_BASE", "https://api.telegram.org", "Bot API base URL"),
    ),
    *_vars(
        "Web chat",
        ("WEBCHAT_IDENTITY_SECRET", None, "HMAC secret the website signs customer identities with; unset: the chat stays anonymous", True),
        ("WEBCHAT_IDENTITY_MAX_AGE", "86400", "longest validity, in seconds, a signed web identity may claim"),
        ("WEBCHAT_SOCKETIO_PATH", "/socket.io", "socket.io path"),
        ("WEBCHAT_USER_MESSAGE_EVT", "user_uttered", "socket.io event for customer messages"),
        ("WEBCHAT_BOT_MESSAGE_EVT", "bot_uttered", "socket.io event for bot messages"),
        ("WEBCHAT_TELEGRAM_BOT", None, "bot username for the widget's \"continue on Telegram\" link"),
        ("WEBCHAT_WHATSAPP_NUMBER", None, "number for the widget's \"continue on WhatsApp\" link"),
        ("WEBCHAT_TITLE", "Threadline", "title shown by the widget"),
    ),
    *_vars(
        "Voice",
        ("TWILIO_AUTH_TOKEN", None, "Twilio auth token (signature check)", True),
        ("TWILIO_PUBLIC_BASE_URL", None, "the public URL Twilio calls, when behind a proxy"),
        ("TWILIO_VOICE_LANGUAGE", "en-US", "speech language"),
        ("TWILIO_VOICE", "Polly.Joanna-Neural", "text-to-speech voice"),
        ("TWILIO_SPEECH_TIMEOUT", "auto", "end-of-speech wait: `auto` or seconds"),
        ("TWILIO_INPUT_TIMEOUT", "5", "seconds of silence before the no-input path"),
        ("TWILIO_VOICE_TRANSFER_TO", None, "where Twilio calls go after a handoff (wins over `VOICE_TRANSFER_TO`)"),
        ("TWILIO_ACCOUNT_SID", None, "Twilio account SID (`AC...`) for outbound calls (`place_call`); unset: outbound calls on Twilio fail with \"not configured\", incoming calls work as before"),
        ("TWILIO_API_BASE", "https://api.twilio.com", "Twilio REST API base URL (outbound calls: `POST {base}/2010-04-01/Accounts/{sid}/Calls.json`)"),
        ("TWILIO_CALLER_NUMBER", None, "the Twilio number outbound calls come from (E.164, the `From`); needs `TWILIO_PUBLIC_BASE_URL` for the answer URL"),
        ("JAMBONZ_WEBHOOK_SECRET", None, "jambonz webhook signing secret", True),
        ("JAMBONZ_BASIC_AUTH_USER", None, "basic auth user instead of signatures (self-hosted jambonz)"),
        ("JAMBONZ_BASIC_AUTH_PASSWORD", None, "basic auth password", True),
        ("JAMBONZ_PUBLIC_BASE_URL", None, "the public URL jambonz calls, when behind a proxy"),
        ("JAMBONZ_LANGUAGE", "en-US", "speech language"),
        ("JAMBONZ_VOICE", None, "synthesizer voice; unset: the application's default"),
        ("JAMBONZ_INPUT_TIMEOUT", "8", "seconds of silence before the no-input path"),
        ("JAMBONZ_TRANSFER_TO", None, "where jambonz calls go after a handoff (wins over `VOICE_TRANSFER_TO`)"),
        ("JAMBONZ_API_BASE", "https://api.jambonz.cloud", "jambonz REST API base URL (outbound calls: `POST {base}/v1/Accounts/{sid}/Calls`); self-hosted: your API server"),
        ("JAMBONZ_ACCOUNT_SID", None, "jambonz account SID for outbound calls (`place_call`); unset: outbound calls on jambonz fail with \"not configured\", incoming calls work as before"),
        ("JAMBONZ_API_KEY", None, "jambonz API key (Bearer token) for outbound calls", True),
        ("JAMBONZ_CALLER_NUMBER", None, "the number outbound jambonz calls come from (the `from`); needs `JAMBONZ_PUBLIC_BASE_URL` for the answer URL"),
        ("JAMBONZ_APPLICATION_SID", None, "jambonz application whose speech settings outbound calls use; unset: the account's defaults"),
        ("VOICE_TRANSFER_TO", None, "number or SIP URI a caller is transferred to after a handoff; unset: the case waits in the desk's queue"),
        ("VOICE_LOW_CONFIDENCE", "0.5", "speech confidence below which a turn is flagged"),
        ("VOICE_PREFETCH", "true", "look the caller up while the call starts"),
        ("PREFETCH_TTL_SECONDS", "120", "how long a prefetched lookup stays usable"),
    ),
    *_vars(
        "Agent desk",
        ("AGENT_TOKENS", None, "agents allowed to sign in, `name:token,name:token` (kept as scrypt hashes); unset: every sign-in is refused", True),
        ("AGENT_SESSION_SECRET", None, "signs desk session cookies; unset: derived from the secret key", True),
        ("AGENT_SESSION_HOURS", "12", "desk session length"),
        ("AGENT_COOKIE_SECURE", None, "`1` always marks desk cookies Secure, `0` never; unset: Secure when the request came over HTTPS (through a trusted proxy too) or in production"),
        ("AGENT_HOURS", None, "when people are available, e.g. `Mon-Sat 08:00-20:00`; unset: always"),
        ("AGENT_TIMEZONE", None, "time zone of `AGENT_HOURS` (IANA name); unset: the server's"),
        ("AGENT_QUEUE_LIMIT", None, "queued cases at most before customers are offered a callback; unset: no limit"),
    ),
    *_vars(
        "Journeys",
        ("JOURNEYS_DIR", None, "where journey definitions live; unset: `journeys/`"),
        ("JOURNEY_WORKER", "on", "`off`: this rasa server runs no journey worker (another replica's does)"),
        ("JOURNEY_POLL_SECONDS", "0.5", "how often a worker looks for due steps"),
        ("JOURNEY_BATCH", "20", "due steps a worker claims at once"),
        ("JOURNEY_LEASE_SECONDS", "120", "how long a claimed step stays a worker's; after that another worker recovers it"),
        ("JOURNEY_WAIT_SCALE", "1", "every step's wait is multiplied by this (tests and demos shorten 48 h to seconds)"),
        ("JOURNEY_QUIET_HOURS", "21:00-08:00", "when journeys never write or call, in the customer's local time; `off`: never quiet"),
        ("JOURNEY_DEFAULT_TIMEZONE", "UTC", "time zone of a customer with none stored and no phone number"),
        ("JOURNEY_FREQUENCY_CAP", "3/24h", "most journey sends per customer in a rolling window, across channels and journeys; `off`: no cap"),
    ),
    *_vars(
        "Metrics",
        ("METRICS_TOKEN", None, "bearer token Prometheus sends to `GET /webhooks/metrics/`; unset: the route answers 503 and exposes nothing", True),
        ("METRICS_DIR", None, "directory every process of one stack (rasa server, action server, journey worker) writes its metric files to (prometheus_client's multiprocess mode, `PROMETHEUS_MULTIPROC_DIR`); files of dead processes are cleared when a stack starts; unset: `var/metrics/`"),
    ),
]

VARIABLES: Dict[str, Variable] = {variable.name: variable for variable in _REGISTRY}

# Secrets derived from the master key when their own variable is unset.
_DERIVED = {
    "id_pepper": "THREADLINE_ID_PEPPER",
    "metadata_key": "THREADLINE_METADATA_KEY",
    "action_server_token": "ACTION_SERVER_TOKEN",
    "agent_session_secret": "AGENT_SESSION_SECRET",
    "visitor_key": None,
    "vault_key": "THREADLINE_VAULT_KEY",
    "trace_key": None,  # HMAC key of the customer pseudonym in traces (threadline.tracing)
}


class SettingsError(RuntimeError):
    """A setting is missing or malformed; the message names the variable."""


def _clean(value: Optional[str]) -> Optional[str]:
    if value is None:
        return None
    value = value.strip()
    return value or None


class Settings:
    """A snapshot of every registered variable (and the values derived from them)."""

    def __init__(self, environ: Optional[Mapping[str, str]] = None) -> None:
        environ = os.environ if environ is None else environ
        self._raw: Dict[str, Optional[str]] = {name: _clean(environ.get(name)) for name in VARIABLES}
        # Variables of connectors outside this project (their credential_env), read through ``extra``.
        self._others: Dict[str, str] = {k: v for k, v in environ.items() if k not in VARIABLES and _clean(v)}
        self._secret_cache: Dict[str, str] = {}

    # -------------------------------------------------------------- raw access

    def get(self, name: str, default: Optional[str] = None) -> Optional[str]:
        """The variable's value, else ``default``, else its registered default."""
        if name not in VARIABLES:
            raise KeyError(f"{name} is not a registered setting (add it to threadline/settings.py)")
        value = self._raw[name]
        if value is not None:
            return value
        return default if default is not None else VARIABLES[name].default

    def is_set(self, name: str) -> bool:
        """Whether the variable has a non-empty value in the environment."""
        return self.get_raw(name) is not None

    def get_raw(self, name: str) -> Optional[str]:
        """The variable's own value, ignoring defaults."""
        if name not in VARIABLES:
            raise KeyError(f"{name} is not a registered setting")
        return self._raw[name]

    def extra(self, name: str) -> Optional[str]:
        """A variable that is not in the registry (a third-party connector's credential)."""
        if name in VARIABLES:
            return self.get_raw(name)
        return _clean(self._others.get(name))

    def integer(self, name: str) -> int:
        """The variable as an integer; a malformed value names the variable."""
        value = self.get(name)
        try:
            return int(float(value))  # "1e3" and "10.0" are accepted too
        except (TypeError, ValueError):
            raise SettingsError(f"{name} must be a whole number, not {value!r}") from None

    def number(self, name: str) -> float:
        """The variable as a float."""
        value = self.get(name)
        try:
            return float(value)
        except (TypeError, ValueError):
            raise SettingsError(f"{name} must be a number, not {value!r}") from None

    def flag(self, name: str) -> bool:
        """The variable as a yes/no switch."""
        value = (self.get(name) or "").lower()
        return value not in ("", "0", "false", "no", "off")

    def items(self, name: str) -> List[str]:
        """A comma-separated variable as a list."""
        return [part.strip() for part in (self.get(name) or "").split(",") if part.strip()]

    def environ(self) -> Dict[str, str]:
        """The registered variables that are set, as an environment for child processes."""
        return {name: value for name, value in self._raw.items() if value is not None}

    # ---------------------------------------------------------- infrastructure

    @property
    def production(self) -> bool:
        """Whether this is a production deployment (secrets required)."""
        return (self.get("THREADLINE_ENV") or "").lower() == "production"

    @property
    def var_dir(self) -> Path:
        """Directory for local state (created on first use)."""
        path = Path(self.get_raw("THREADLINE_VAR_DIR") or PROJECT_ROOT / "var")
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def metrics_dir(self) -> Path:
        """Where every process of the stack writes its Prometheus metric files (created on first use)."""
        raw = self.get_raw("METRICS_DIR")
        path = Path(raw).resolve() if raw else self.var_dir.resolve() / "metrics"
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def key_prefix(self) -> str:
        """Prefix of every Redis key."""
        prefix = self.get("THREADLINE_KEY_PREFIX") or "threadline"
        if not prefix.replace("_", "").isalnum():
            raise SettingsError(f"THREADLINE_KEY_PREFIX must be letters, digits or '_', not {prefix!r}")
        return prefix

    @property
    def redis_url(self) -> Optional[str]:
        """The operator's Redis, or None for the embedded server."""
        return self.get_raw("REDIS_URL")

    @property
    def database_url(self) -> str:
        """SQLAlchemy URL of the business database (SQLite under var/ by default)."""
        url = self.get_raw("DATABASE_URL")
        if url:
            # Heroku-style URLs still say postgres://, which SQLAlchemy 1.4 rejects.
            return "postgresql://" + url[len("postgres://"):] if url.startswith("postgres://") else url
        return f"sqlite:///{self.var_dir / 'threadline.db'}"

    @property
    def action_server_url(self) -> str:
        """The action server's webhook, as the rasa server calls it."""
        return self.get_raw("ACTION_SERVER_URL") or f"http://127.0.0.1:{self.integer('ACTION_PORT')}/webhook"

    @property
    def cors_origins(self) -> List[str]:
        """Browser origins allowed to call the server (empty: same origin only)."""
        origins = self.items("THREADLINE_CORS_ORIGINS")
        if "*" in origins:
            raise SettingsError("THREADLINE_CORS_ORIGINS may not be '*': list the sites that embed the web chat")
        return origins

    # ----------------------------------------------------------------- secrets

    def secret(self, purpose: str) -> str:
        """A secret for ``purpose`` (see ``_DERIVED``): its own variable, else derived.

        Derived secrets are HMAC-SHA256 of the purpose under the master key
        (``THREADLINE_SECRET_KEY``, or ``var/secret.key`` outside production).
        """
        if purpose not in _DERIVED:
            raise KeyError(f"unknown secret purpose {purpose!r}")
        cached = self._secret_cache.get(purpose)
        if cached is not None:
            return cached
        variable = _DERIVED[purpose]
        value = self.get_raw(variable) if variable else None
        if value is None:
            master = self._master_key()
            value = hmac.new(master.encode(), f"threadline:{purpose}".encode(), hashlib.sha256).hexdigest()
        self._secret_cache[purpose] = value
        return value

    def _master_key(self) -> str:
        configured = self.get_raw("THREADLINE_SECRET_KEY")
        if configured:
            if len(configured) < 32:
                raise SettingsError("THREADLINE_SECRET_KEY must be at least 32 characters of randomness")
            return configured
        if self.production:
            raise SettingsError(
                "THREADLINE_SECRET_KEY is required when THREADLINE_ENV=production "
                "(generate one with: python -c 'import secrets; print(secrets.token_hex(32))')"
            )
        return generated_key(self.var_dir)


def generated_key(var_dir: Path) -> str:
    """The development master key in ``var_dir/secret.key``, created on first use."""
    path = var_dir / "secret.key"
    lock = var_dir / ".secret.lock"
    with open(lock, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # two processes starting at once agree on one key
        if not path.exists():
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as out:
                out.write(_secrets.token_hex(32) + "\n")
        return path.read_text().strip()


def export_to_libraries(values: Mapping[str, str]) -> None:
    """Put variables that a library reads itself into this process's environment.

    The one writer of ``os.environ``: prometheus_client takes its multiprocess
    directory from ``PROMETHEUS_MULTIPROC_DIR`` (see ``threadline.metrics``).
    """
    os.environ.update(values)


def process_environment() -> Dict[str, str]:
    """This process's whole environment, for the child processes a launcher starts."""
    return dict(os.environ)


_current: Optional[Settings] = None


def get() -> Settings:
    """The process's settings (read from the environment on first use)."""
    global _current
    if _current is None:
        _current = Settings()
    return _current


def reload(environ: Optional[Mapping[str, str]] = None) -> Settings:
    """Take a new snapshot of the environment (tests; a launcher preparing children)."""
    global _current
    _current = Settings(environ)
    return _current


# ------------------------------------------------------------- documentation


def markdown_table() -> str:
    """The README's configuration section, grouped as in the registry."""
    lines: List[str] = []
    group = None
    for variable in _REGISTRY:
        if variable.group != group:
            group = variable.group
            if lines:
                lines.append("")
            lines += [f"**{group}**", "", "| Variable | Default | Used for |", "| --- | --- | --- |"]
        default = f"`{variable.default}`" if variable.default is not None else "unset"
        secret = " (secret)" if variable.secret else ""
        lines.append(f"| `{variable.name}` | {default} | {variable.help}{secret} |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m threadline.settings --markdown`` prints the README table."""
    parser = argparse.ArgumentParser(description="Threadline settings")
    parser.add_argument("--markdown", action="store_true", help="print the README's configuration table")
    args = parser.parse_args(argv)
    if args.markdown:
        sys.stdout.write(markdown_table())
        return 0
    current = get()
    for name, variable in VARIABLES.items():
        value = current.get(name)
        shown = "***" if variable.secret and value else value
        print(f"{name}={shown if shown is not None else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
