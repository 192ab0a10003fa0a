"""Journey definitions: ``journeys/<name>.yml``, read and checked for conversation designers.

A journey is a trigger and a list of steps. Each step waits (after the journey
starts, or after the previous step ran), checks its conditions, and sends one
domain response on the first channel of its preference list that can reach
the customer, or phones them (``call``). Example::

    journey: service_reminder
    description: The car is due for its service; offer the workshop.
    trigger:
      event: service_due          # or omit it: started by an operator only
    purpose: service              # or marketing (needs the customer's marketing opt-in)
    cancel_on_reply: true         # any customer message on any channel ends the journey
    context:
      required: [vehicle]         # what the trigger or operator must give
    steps:
      - name: reminder
        wait: 0s
        channels: [whatsapp, telegram, webchat]
        response: utter_journey_service_reminder
        template: {name: service_reminder, language: en_US}  # WhatsApp, outside the 24 h window
        offer: book_appointment   # sets the journey_offer slot: "yes, Tuesday works" books it
        slots: {appointment_service: repair}
      - name: call
        wait: 24h
        unless: [appointment_booked]
        call: [twilio_voice, jambonz]
        response: utter_journey_service_call

``load_all`` reads every file and raises ``JourneyError`` listing every
problem (file, journey, step, what is wrong), which ``make validate`` prints.
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from threadline import settings as settings_module

MESSAGE_CHANNELS = ("whatsapp", "telegram", "webchat")
CALL_CHANNELS = ("twilio_voice", "jambonz")
PURPOSES = ("service", "marketing")
OFFERS = ("book_appointment",)
# Conditions a step can be skipped on (see threadline.journeys.conditions).
CONDITIONS = ("replied", "appointment_booked")
EVENTS = ("appointment_booked", "case_closed", "order_shipped", "service_due")

_DURATION = re.compile(r"^\s*(?:(\d+)\s*d)?\s*(?:(\d+)\s*h)?\s*(?:(\d+)\s*m)?\s*(?:(\d+)\s*s)?\s*$")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


class JourneyError(ValueError):
    """One or more journey files are wrong; the message lists every problem."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


def parse_duration(text: Any) -> dt.timedelta:
    """``"48h"``, ``"1d 12h"``, ``"30m"``, ``"0s"`` as a timedelta; ValueError otherwise."""
    raw = str(text).strip().lower() if text is not None else ""
    match = _DURATION.match(raw)
    if not raw or not match or not any(match.groups()):
        raise ValueError(f"{text!r} is not a duration (write e.g. 48h, 30m, 1d 12h, 0s)")
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return dt.timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)


def parse_quiet_hours(text: Optional[str]) -> Optional[Tuple[dt.time, dt.time]]:
    """``"21:00-08:00"`` as (start, end) local times; ``"off"`` or empty is None."""
    if text is None or str(text).strip().lower() in ("", "off", "none"):
        return None
    parts = str(text).replace(" ", "").split("-")
    if len(parts) != 2 or not all(_CLOCK.match(p) for p in parts):
        raise ValueError(f"quiet hours {text!r} must look like 21:00-08:00 (or off)")
    start, end = (dt.time(int(p[:2]), int(p[3:])) for p in parts)
    if start == end:
        raise ValueError(f"quiet hours {text!r} start and end at the same time")
    return start, end


@dataclass(frozen=True)
class Step:
    """One step: wait, check, then send ``response`` (or phone the customer)."""

    name: str
    wait: dt.timedelta
    response: str
    channels: Tuple[str, ...] = ()
    call: Tuple[str, ...] = ()
    unless: Tuple[str, ...] = ()
    template: Optional[Dict[str, str]] = None
    offer: Optional[str] = None
    slots: Dict[str, Any] = field(default_factory=dict)

    @property
    def is_call(self) -> bool:
        """Whether the step phones the customer."""
        return bool(self.call)


@dataclass(frozen=True)
class Journey:
    """A whole journey definition."""

    name: str
    description: str
    steps: Tuple[Step, ...]
    event: Optional[str] = None
    purpose: str = "service"
    cancel_on_reply: bool = True
    required: Tuple[str, ...] = ()
    # None: JOURNEY_QUIET_HOURS applies; (): this journey has none; else (start, end) local times.
    quiet_hours: Optional[Tuple[dt.time, ...]] = None
    source: str = ""

    def step(self, index: int) -> Optional[Step]:
        """The step at ``index``, or None past the end."""
        return self.steps[index] if 0 <= index < len(self.steps) else None


def journeys_dir() -> Path:
    """Where the definitions live (``JOURNEYS_DIR``, default ``journeys/``)."""
    configured = settings_module.get().get("JOURNEYS_DIR")
    path = Path(configured) if configured else settings_module.PROJECT_ROOT / "journeys"
    return path if path.is_absolute() else settings_module.PROJECT_ROOT / path


def _strings(value: Any, where: str, problems: List[str]) -> Tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        problems.append(f"{where}: expected a list of names")
        return ()
    return tuple(v.strip() for v in value)


def _step(raw: Any, index: int, where: str, domain: Optional[Dict[str, Any]], problems: List[str]) -> Optional[Step]:
    where = f"{where}, step {index + 1}"
    if not isinstance(raw, dict):
        problems.append(f"{where}: a step must be a mapping with name, wait, response and channels or call")
        return None
    known = {"name", "wait", "response", "channels", "call", "unless", "template", "offer", "slots"}
    for key in sorted(set(raw) - known):
        problems.append(f"{where}: unknown key {key!r} (allowed: {', '.join(sorted(known))})")
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        problems.append(f"{where}: name must be lower_snake_case, not {name!r}")
        name = f"step_{index + 1}"
    where = f"{where} ({name})"
    try:
        wait = parse_duration(raw.get("wait", "0s"))
    except ValueError as exc:
        problems.append(f"{where}: wait: {exc}")
        wait = dt.timedelta(0)
    response = raw.get("response")
    responses = (domain or {}).get("responses") or {}
    if not isinstance(response, str) or not response.startswith("utter_"):
        problems.append(f"{where}: response must name a domain response (utter_...), not {response!r}")
        response = ""
    elif domain is not None and response not in responses:
        problems.append(f"{where}: response {response} is not in domain.yml")
    channels = _strings(raw.get("channels"), f"{where}: channels", problems)
    call = _strings(raw.get("call"), f"{where}: call", problems)
    for channel in channels:
        if channel not in MESSAGE_CHANNELS:
            problems.append(f"{where}: channel {channel!r} cannot carry a message (use {', '.join(MESSAGE_CHANNELS)})")
    for channel in call:
        if channel not in CALL_CHANNELS:
            problems.append(f"{where}: {channel!r} cannot place a call (use {', '.join(CALL_CHANNELS)})")
    if bool(channels) == bool(call):
        problems.append(f"{where}: give either channels (a message) or call (a phone call), exactly one")
    unless = _strings(raw.get("unless"), f"{where}: unless", problems)
    for condition in unless:
        if condition not in CONDITIONS:
            problems.append(f"{where}: unknown condition {condition!r} (known: {', '.join(CONDITIONS)})")
    template = raw.get("template")
    if template is not None:
        if not isinstance(template, dict) or not isinstance(template.get("name"), str) or not template["name"]:
            problems.append(f"{where}: template must be {{name: ..., language: ...}}")
            template = None
        else:
            template = {"name": template["name"], "language": str(template.get("language") or "en_US")}
    offer = raw.get("offer")
    if offer is not None and offer not in OFFERS:
        problems.append(f"{where}: unknown offer {offer!r} (known: {', '.join(OFFERS)})")
    slots = raw.get("slots") or {}
    if not isinstance(slots, dict):
        problems.append(f"{where}: slots must map slot names to values")
        slots = {}
    domain_slots = (domain or {}).get("slots") or {}
    if domain is not None:
        for slot in slots:
            if slot not in domain_slots:
                problems.append(f"{where}: slot {slot!r} is not in domain.yml")
    return Step(name, wait, response, channels, call, unless, template, offer, dict(slots))


def parse(raw: Any, source: str, domain: Optional[Dict[str, Any]] = None) -> Tuple[Optional[Journey], List[str]]:
    """One journey from its YAML data; returns (journey or None, problems)."""
    problems: List[str] = []
    if not isinstance(raw, dict):
        return None, [f"{source}: expected a mapping with journey, trigger and steps"]
    known = {"journey", "description", "trigger", "purpose", "cancel_on_reply", "context", "steps", "quiet_hours"}
    for key in sorted(set(raw) - known):
        problems.append(f"{source}: unknown key {key!r} (allowed: {', '.join(sorted(known))})")
    name = raw.get("journey")
    if not isinstance(name, str) or not _NAME.match(name):
        problems.append(f"{source}: journey must be a lower_snake_case name, not {name!r}")
        name = "unnamed"
    where = f"{source} ({name})"
    trigger = raw.get("trigger") or {}
    event = None
    if not isinstance(trigger, dict) or set(trigger) - {"event"}:
        problems.append(f"{where}: trigger must be {{event: <name>}} or left out (operators start it)")
    else:
        event = trigger.get("event")
        if event is not None and event not in EVENTS:
            problems.append(f"{where}: unknown trigger event {event!r} (known: {', '.join(EVENTS)})")
    purpose = raw.get("purpose", "service")
    if purpose not in PURPOSES:
        problems.append(f"{where}: purpose must be one of {', '.join(PURPOSES)}, not {purpose!r}")
    cancel = raw.get("cancel_on_reply", True)
    if not isinstance(cancel, bool):
        problems.append(f"{where}: cancel_on_reply must be true or false")
        cancel = True
    context = raw.get("context") or {}
    required: Tuple[str, ...] = ()
    if not isinstance(context, dict):
        problems.append(f"{where}: context must be {{required: [...]}}")
    else:
        required = _strings(context.get("required"), f"{where}: context.required", problems)
    quiet = None
    if "quiet_hours" in raw:
        value = raw.get("quiet_hours")
        try:
            # YAML reads an unquoted off as false; either way the journey has no quiet hours (an empty tuple).
            quiet = () if value is False or str(value).strip().lower() in ("off", "none") else parse_quiet_hours(value)
        except ValueError as exc:
            problems.append(f"{where}: {exc}")
    raw_steps = raw.get("steps")
    steps: List[Step] = []
    if not isinstance(raw_steps, list) or not raw_steps:
        problems.append(f"{where}: steps must be a non-empty list")
    else:
        for index, raw_step in enumerate(raw_steps):
            step = _step(raw_step, index, where, domain, problems)
            if step is not None:
                steps.append(step)
        names = [s.name for s in steps]
        for duplicate in sorted({n for n in names if names.count(n) > 1}):
            problems.append(f"{where}: step name {duplicate!r} is used twice")
    if problems:
        return None, problems
    return Journey(name, str(raw.get("description") or ""), tuple(steps), event, purpose, cancel, required,
                   quiet, source), []


def load_domain() -> Optional[Dict[str, Any]]:
    """domain.yml as plain data (responses and slots are what journeys refer to)."""
    import yaml

    path = settings_module.PROJECT_ROOT / "domain.yml"
    if not path.exists():
        return None
    with path.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle) or {}


def load_all(directory: Optional[Path] = None, domain: Optional[Dict[str, Any]] = None,
             check_domain: bool = True) -> Dict[str, Journey]:
    """Every journey in ``directory`` by name; ``JourneyError`` lists every problem found."""
    import yaml

    directory = directory or journeys_dir()
    if domain is None and check_domain:
        domain = load_domain()
    problems: List[str] = []
    found: Dict[str, Journey] = {}
    if not directory.is_dir():
        return found
    for path in sorted(directory.glob("*.yml")) + sorted(directory.glob("*.yaml")):
        source = path.name
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            problems.append(f"{source}: not valid YAML: {exc}")
            continue
        journey, errors = parse(raw, source, domain)
        problems.extend(errors)
        if journey is None:
            continue
        if journey.name in found:
            problems.append(f"{source}: journey {journey.name!r} is also defined in {found[journey.name].source}")
            continue
        found[journey.name] = journey
    if problems:
        raise JourneyError(problems)
    return found


def triggered_by(journeys: Iterable[Journey], event: str) -> List[Journey]:
    """The journeys an event starts."""
    return [j for j in journeys if j.event == event]
