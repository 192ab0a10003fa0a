"""When a journey may write to a customer: quiet hours in their local time, and a frequency cap.

Consent (service or marketing, per channel) and WhatsApp's 24-hour window are
checked by the outbound path itself (``connectors.consent``), like every
message the bot sends on its own; this module holds what only journeys need:

* **Quiet hours** (``JOURNEY_QUIET_HOURS``, e.g. ``21:00-08:00``, or a
  journey's own ``quiet_hours``) in the customer's local time. The time zone is
  the one the trigger or operator stored in the journey's context
  (``timezone``), else the one of the customer's phone number
  (``phonenumbers``' time zone data: a number whose region spans several zones
  takes the first), else ``JOURNEY_DEFAULT_TIMEZONE``. A step due inside
  quiet hours moves to the moment they end, computed in local wall-clock time
  with ``zoneinfo``, so a daylight-saving change moves it to 08:00 local, not
  an hour off.
* **Frequency cap** (``JOURNEY_FREQUENCY_CAP``, e.g. ``3/24h``): at most that
  many journey sends per customer, across every channel and journey, in a
  rolling window; a step over the cap moves to when the oldest send in the
  window leaves it.
"""
from __future__ import annotations

import datetime as dt
import logging
from typing import Optional, Tuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as phone_timezones

from threadline import settings as settings_module
from threadline.journeys.definitions import parse_duration, parse_quiet_hours

logger = logging.getLogger(__name__)

UTC = dt.timezone.utc


def zone(name: Optional[str]) -> Optional[ZoneInfo]:
    """The IANA zone ``name``, or None when it is not one."""
    if not name:
        return None
    try:
        return ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError):
        return None


def zone_of_phone(e164: Optional[str]) -> Optional[ZoneInfo]:
    """The time zone of a phone number's region (``phonenumbers``' own data), if it names one."""
    if not e164:
        return None
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return None
    for name in phone_timezones.time_zones_for_number(number):
        found = zone(name)
        if found is not None:
            return found
    return None


def customer_zone(context_zone: Optional[str], phone: Optional[str]) -> ZoneInfo:
    """The customer's zone: stored, else from the phone, else ``JOURNEY_DEFAULT_TIMEZONE``."""
    return (zone(context_zone) or zone_of_phone(phone)
            or zone(settings_module.get().get("JOURNEY_DEFAULT_TIMEZONE")) or ZoneInfo("UTC"))


def default_quiet_hours() -> Optional[Tuple[dt.time, dt.time]]:
    """``JOURNEY_QUIET_HOURS`` parsed (None: off)."""
    return parse_quiet_hours(settings_module.get().get("JOURNEY_QUIET_HOURS"))


def _inside(local: dt.time, start: dt.time, end: dt.time) -> bool:
    if start < end:
        return start <= local < end
    return local >= start or local < end  # the quiet hours span midnight


def next_allowed(when_utc: dt.datetime, tz: ZoneInfo,
                 quiet: Optional[Tuple[dt.time, dt.time]]) -> dt.datetime:
    """``when_utc`` (naive UTC) if it is outside quiet hours in ``tz``, else when they end (naive UTC)."""
    if quiet is None:
        return when_utc
    start, end = quiet
    local = when_utc.replace(tzinfo=UTC).astimezone(tz)
    if not _inside(local.time(), start, end):
        return when_utc
    day = local.date()
    if start > end and local.time() >= start:
        day += dt.timedelta(days=1)  # evening: quiet until tomorrow morning
    # Wall-clock end of quiet hours on that day; fold=0 and a DST gap resolve to a real instant.
    ends = dt.datetime.combine(day, end, tzinfo=tz)
    ends_utc = ends.astimezone(UTC)
    # A time inside a spring-forward gap does not exist: zoneinfo maps it forward, still after the quiet hours.
    return ends_utc.replace(tzinfo=None)


def frequency_cap() -> Optional[Tuple[int, dt.timedelta]]:
    """``JOURNEY_FREQUENCY_CAP`` (``"3/24h"``) as (count, window); ``off`` is None."""
    raw = (settings_module.get().get("JOURNEY_FREQUENCY_CAP") or "").strip().lower()
    if raw in ("", "off", "none"):
        return None
    count, _, window = raw.partition("/")
    try:
        limit = int(count)
        span = parse_duration(window)
    except ValueError:
        raise settings_module.SettingsError(
            f"JOURNEY_FREQUENCY_CAP must look like 3/24h (or off), not {raw!r}") from None
    if limit < 1 or span <= dt.timedelta(0):
        raise settings_module.SettingsError("JOURNEY_FREQUENCY_CAP needs a positive count and window")
    return limit, span


def wait_scale() -> float:
    """``JOURNEY_WAIT_SCALE``: every wait is multiplied by it (tests and demos shorten 48 h to seconds)."""
    scale = settings_module.get().number("JOURNEY_WAIT_SCALE")
    if scale < 0:
        raise settings_module.SettingsError("JOURNEY_WAIT_SCALE must not be negative")
    return scale


def scaled(wait: dt.timedelta) -> dt.timedelta:
    """A step's wait after ``JOURNEY_WAIT_SCALE``."""
    return dt.timedelta(seconds=wait.total_seconds() * wait_scale())
