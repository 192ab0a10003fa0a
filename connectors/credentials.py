"""Channel settings: from credentials.yml and the environment, and what a channel without them is.

Each connector names its settings (``credential_env``: credentials.yml key
-> environment variable) and their defaults. ``load_config`` merges them; a
channel whose required settings are all unset is off (``DisabledChannel``
answers 503 and names what to set), one with some but not all of them stops
the server with a message naming the missing ones.
"""
from typing import Any, Awaitable, Callable, Dict, List, Optional

from rasa.core.channels.channel import InputChannel, UserMessage
from rasa.shared.exceptions import RasaException
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from connectors import server
from threadline import settings as settings_module


class AllMissing(Exception):
    """None of a channel's required settings is given: the channel is off."""

    def __init__(self, missing: List[str]) -> None:
        super().__init__(", ".join(missing))
        self.missing = missing


def load_config(cls: Any, credentials: Optional[Dict[str, Any]]) -> Dict[str, str]:
    """Credentials merged with the environment and defaults; checks required keys."""
    credentials = credentials or {}
    config_source = settings_module.get()
    config: Dict[str, str] = {}
    missing, required = [], 0
    for key, variable in cls.credential_env.items():
        value = credentials.get(key)
        if isinstance(value, str) and (not value.strip() or value.strip().startswith("${")):
            value = None  # empty, or an unexpanded ${VAR}
        if value is None:
            value = config_source.extra(variable)
        if value is None:
            value = cls.credential_defaults.get(key)
            if value is None and variable in settings_module.VARIABLES:
                value = settings_module.VARIABLES[variable].default
        if key not in cls.credential_defaults:
            required += 1
        if value is None:
            missing.append(variable)
        else:
            config[key] = str(value)
    if missing and len(missing) == required:
        raise AllMissing(missing)
    if missing:
        raise RasaException(
            f"The {cls.name()} channel needs these settings: {', '.join(missing)}. "
            f"Set them in the environment (or in credentials.yml); leave them all unset to turn the channel off."
        )
    return config


class DisabledChannel(InputChannel):
    """A channel whose settings are all unset: it answers 503 and says what to set."""

    def __init__(self, name: str, missing: List[str]) -> None:
        self._name = name
        self.missing = missing

    def name(self) -> str:  # type: ignore[override]
        """The channel's own name, so its routes say it is off."""
        return self._name

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        """``GET /`` and ``POST /webhook`` answering 503 with the missing settings."""
        blueprint = Blueprint(f"threadline_{self._name}_off", __name__)
        body = {"status": "off", "channel": self._name, "set": self.missing}

        @blueprint.route("/", methods=["GET"])
        async def health(_: Request) -> HTTPResponse:
            return response.json(body, status=503)

        @blueprint.route("/webhook", methods=["GET", "POST"])
        async def webhook(_: Request) -> HTTPResponse:
            return response.json({**body, "error": f"the {self._name} channel is off"}, status=503)

        server.register(blueprint)
        return blueprint
