"""Booking, rescheduling and cancelling appointments against real availability.

Times are read the way customers give them (``actions.datetimes``): a time
alone keeps the day already chosen, a day alone keeps the time, "the monday
after" counts from the appointment being moved, in the customer's time zone.
A change anywhere in a form ("actually make it 11am", "wrong email, it's ...",
"no, 11 not 10") replaces that one value and the form goes on
(``actions.forms``).

Moving and cancelling first find the appointment the customer means: one
they name (its reference, its service or its day), the one booked in this
conversation, their only one, or the one they pick from their list; a
customer the bot does not know gives its reference and the email it was
booked with (step-up, ``actions.verification``).
"""
import abc
import datetime as dt
import re
from typing import Any, Dict, List, Optional, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.forms import REQUESTED_SLOT
from rasa_sdk.types import DomainDict

from actions import verification
from actions.context import customer_now, customer_ref, entity_value, latest_intent, latest_text, turn
from actions.continuity import known_before_latest
from actions.datetimes import Context, When, parse_when, resolve
from actions.formatting import say_date, say_datetime, say_time, with_article
from actions.forms import TaskFormValidation, asked, is_correction, mentions_change
from actions.personal_data import reveal, shown
from actions.tasks import DIGRESSIONS
from threadline.db import queries
from threadline.journeys import service as journeys
from threadline.pii import is_token
from threadline.db.seed import OPEN_DAYS, OPEN_HOURS, SERVICES

EMAIL_RE = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$")
REF_RE = re.compile(r"APT-?([0-9A-F]{6})(?![0-9A-Z])")
TIME_SLOTS = ("appointment_time", "appointment_partial_date", "appointment_partial_time")
# What the step-up slot holds when the lookup ended without an appointment.
GAVE_UP = ("locked", "unknown")
# Words naming a slot in "change the email" / "the time is wrong" (a change without the new value).
SLOT_WORDS = {
    "appointment_email": ("email", "e-mail", "address"),
    "appointment_time": ("time", "day", "date", "when"),
    "appointment_service": ("service", "type of appointment"),
}
_SPOKEN_DIGITS = {"zero": "0", "oh": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
                  "six": "6", "seven": "7", "eight": "8", "nine": "9"}


def _as_datetime(value: Any) -> Optional[dt.datetime]:
    try:
        return dt.datetime.fromisoformat(str(value))
    except ValueError:
        return None


def _as_date(value: Any) -> Optional[dt.date]:
    try:
        return dt.date.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


def _as_time(value: Any) -> Optional[dt.time]:
    try:
        return dt.time.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


def _email_or_token(value: Any, tracker: Tracker, purpose: str) -> Optional[str]:
    """The slot value for an email answer: its vault token (lower case) when it was masked, else the address."""
    text = str(value or "").strip()
    if is_token(text):
        return text.lower() if normalise_email(reveal(text, tracker, purpose)) else None
    return normalise_email(text)


def normalise_email(value: Any) -> Optional[str]:
    """An email address from what was typed or said ("jane at example dot com"), or None."""
    text = str(value or "").strip().strip(".,!?").lower()
    found = re.search(r"[\w.%+-]+@[\w-]+(?:\.[\w-]+)*\.[a-z]{2,}", text)
    if not found:
        spoken = re.sub(r"\s+(?:at)\s+", "@", f" {text} ")
        spoken = re.sub(r"\s+(?:dot)\s+", ".", spoken).strip().replace(" ", "")
        found = re.search(r"[\w.%+-]+@[\w-]+(?:\.[\w-]+)*\.[a-z]{2,}", spoken)
    if found and EMAIL_RE.match(found.group(0)):
        return found.group(0)
    return None


def normalise_ref(value: Any) -> Optional[str]:
    """An appointment reference ("APT-1A2B3C") from what was typed or said ("a p t one a two b three c")."""
    text = str(value or "").upper()
    found = REF_RE.search(text)
    if not found:
        words = re.findall(r"[A-Z0-9]+", text)
        spelled = "".join(_SPOKEN_DIGITS.get(w.lower(), w) if len(w) > 1 else w for w in words)
        found = REF_RE.search(spelled)
    return f"APT-{found.group(1)}" if found else None


def chosen_in_form(tracker: Tracker, form: str) -> Optional[dt.datetime]:
    """The last time accepted since ``form`` started (kept through a "no" at the confirmation).

    Earlier forms do not count: the walk back stops where a form started or ended.
    """
    for event in reversed(tracker.events):
        if event.get("event") == "active_loop":
            return None
        if event.get("event") == "slot" and event.get("name") == "appointment_time":
            value = _as_datetime(event.get("value"))
            if value:
                return value
    return None


def target_appointment(tracker: Tracker) -> Optional[queries.AppointmentInfo]:
    """The appointment the customer means, if they may manage it.

    The one named by ``appointment_ref`` (picked, given, or booked in this
    conversation); without one, the customer's soonest manageable appointment.
    """
    ref = tracker.get_slot("appointment_ref")
    if ref:
        found = queries.appointment_by_ref(ref)
        return found if found and verification.may_manage(tracker, found) else None
    return next_appointment(tracker)


def next_appointment(tracker: Tracker) -> Optional[queries.AppointmentInfo]:
    """The soonest upcoming appointment this sender may manage."""
    upcoming = verification.manageable_appointments(tracker)
    return upcoming[0] if upcoming else None


def describe(appointment: queries.AppointmentInfo) -> str:
    """"Repair, Tuesday 8 December at 15:00": a button title for one appointment."""
    return f"{appointment.service_type.capitalize()}, {say_datetime(appointment.starts_at)}"


def _mentioned(tracker: Tracker, slot: str) -> bool:
    text = f" {latest_text(tracker).lower()} "
    return any(f" {word}" in text for word in SLOT_WORDS[slot])


class AppointmentTimeValidation(TaskFormValidation):
    """Shared by the booking and rescheduling forms: understands a requested time in context.

    Subclasses say which service the time is for (``service_for``) and which
    appointment is being moved (``anchor``). A time alone keeps the chosen
    day, a day alone the chosen time; a part given alone is kept
    (``appointment_partial_date`` / ``appointment_partial_time``) and the
    other part asked for. Only a time in the future, in opening hours, on the
    hour and free is accepted; otherwise the nearest free times are offered
    as buttons. Accepting a new time clears an earlier confirmation.
    """

    confirmation_slot = "appointment_confirmed"

    @abc.abstractmethod
    def service_for(self, tracker: Tracker) -> Optional[str]:
        """The service the requested time is for."""

    def anchor(self, tracker: Tracker) -> Optional[dt.datetime]:
        """The start of the appointment being moved (what "the monday after" counts from)."""
        return None

    def time_context(self, tracker: Tracker) -> Context:
        """What a time reply is read against: the customer's now, the partial or earlier choice, the anchor."""
        previous = chosen_in_form(tracker, self.form_name())
        date = _as_date(tracker.get_slot("appointment_partial_date")) or (previous.date() if previous else None)
        time = _as_time(tracker.get_slot("appointment_partial_time")) or (previous.time() if previous else None)
        return Context(now=customer_now(tracker), date=date, time=time, anchor=self.anchor(tracker))

    def reading(self, tracker: Tracker, text: Optional[str] = None) -> When:
        """The date and time in the latest message (or ``text``), in this form's context."""
        return parse_when(latest_text(tracker) if text is None else text, context=self.time_context(tracker))

    async def extract_appointment_time(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        """A time in any message of the form: the answer when asked, a correction otherwise."""
        text = latest_text(tracker)
        if not is_correction(tracker):
            return {}
        reading = self.reading(tracker)
        if asked(tracker) == "appointment_time":
            if latest_intent(tracker) in DIGRESSIONS and reading.empty:
                return {}  # "actually never mind": a stop, not a time we could not read
            return {"appointment_time": text}
        if not reading.empty and not self._only_a_number(text, tracker):
            return {"appointment_time": text}
        if latest_intent(tracker) == "reschedule_appointment" or (
            mentions_change(text) and _mentioned(tracker, "appointment_time")
        ):
            return {"appointment_time": None}  # "can we change the time?": ask again
        return {}

    @staticmethod
    def _only_a_number(text: str, tracker: Tracker) -> bool:
        """A bare number outside the time question ("2") is no time, unless worded as a change ("no, 11 not 10")."""
        digits = re.sub(r"[^\w]", " ", text.lower()).split()
        return len(digits) == 1 and digits[0].isdigit() and not mentions_change(text)

    async def validate_appointment_time(
        self, slot_value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        when = _as_datetime(slot_value)
        if when is not None:
            return self._check_bookable(when, dispatcher, tracker)
        if slot_value is None:
            dispatcher.utter_message(response="utter_appointment_change_what")
            return {"appointment_time": None, "appointment_partial_date": None, "appointment_partial_time": None}
        text = latest_text(tracker)
        source = text if self._from_latest(str(slot_value), tracker) else str(slot_value)
        context = self.time_context(tracker)
        reading = parse_when(source, context=context)
        resolved = resolve(reading, context)
        full = resolved.combine()
        if full:
            return self._check_bookable(full, dispatcher, tracker)
        if asked(tracker) not in ("appointment_time", None) and reading.empty:
            # a stray word an entity extractor took for a time: the chosen time stays
            return {"appointment_time": known_before_latest(tracker, "appointment_time")}
        if resolved.date:
            return {"appointment_time": None, "appointment_partial_date": resolved.date.isoformat(),
                    "appointment_partial_time": None}
        if resolved.time:
            return {"appointment_time": None, "appointment_partial_time": say_time(resolved.time),
                    "appointment_partial_date": None}
        if context.date:
            dispatcher.utter_message(response="utter_no_time_understood", date=say_date(context.date))
        elif context.time:
            dispatcher.utter_message(response="utter_no_day_understood", time=say_time(context.time))
        else:
            dispatcher.utter_message(response="utter_invalid_time")
        return {"appointment_time": None}

    @staticmethod
    def _from_latest(value: str, tracker: Tracker) -> bool:
        """Whether a slot candidate came from the customer's latest message (else: an older value)."""
        text = latest_text(tracker)
        if text.startswith("/"):
            return False
        return value == text or value.lower() in text.lower()

    def _check_bookable(
        self, when: dt.datetime, dispatcher: CollectingDispatcher, tracker: Tracker
    ) -> Dict[Text, Any]:
        cleared = {"appointment_time": None, "appointment_partial_date": None, "appointment_partial_time": None}
        if when <= dt.datetime.now():
            dispatcher.utter_message(response="utter_time_in_past")
            return cleared
        anchor = self.anchor(tracker)
        if anchor and when == anchor:
            dispatcher.utter_message(response="utter_same_time_as_before", time=say_datetime(when))
            return cleared
        service = self.service_for(tracker)
        if when.weekday() not in OPEN_DAYS or when.hour not in OPEN_HOURS:
            dispatcher.utter_message(response="utter_outside_hours")
            return cleared
        if when.minute:
            # "half past two": the nearest times on the hour that day
            hours = [when.replace(minute=0), when.replace(minute=0) + dt.timedelta(hours=1)]
            offered = [h for h in hours if h.hour in OPEN_HOURS and h > dt.datetime.now()
                       and (not service or queries.is_available(service, h))]
            dispatcher.utter_message(response="utter_on_the_hour", time=say_time(when.time()),
                                     buttons=self._time_buttons(offered))
            return dict(cleared, appointment_partial_date=when.date().isoformat())
        if service and not queries.is_available(service, when):
            alternatives = queries.free_slots_near(service, when)
            dispatcher.utter_message(response="utter_slot_taken", time=say_datetime(when),
                                     buttons=self._time_buttons(alternatives))
            return cleared
        result = {
            "appointment_time": when.isoformat(timespec="minutes"),
            "appointment_partial_date": None,
            "appointment_partial_time": None,
            "appointment_confirmed": None,
        }
        before = _as_datetime(known_before_latest(tracker, "appointment_time"))
        if before and before != when and asked(tracker) not in ("appointment_time", "appointment_confirmed", None):
            dispatcher.utter_message(response="utter_changed_time", time=say_datetime(when))
        return result

    @staticmethod
    def _time_buttons(times: List[dt.datetime]) -> List[Dict[str, str]]:
        return [
            {"title": say_datetime(t), "payload": f'/provide_info{{"datetime": "{t.isoformat(timespec="minutes")}"}}'}
            for t in times
        ]

    async def validate_appointment_confirmed(
        self, slot_value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        if slot_value is True:
            return {"appointment_confirmed": True}
        if slot_value is None:
            return {"appointment_confirmed": None}
        dispatcher.utter_message(response="utter_appointment_change_what")
        return {"appointment_confirmed": None, "appointment_time": None}


class ValidateAppointmentForm(AppointmentTimeValidation):
    """Booking: service, time, contact email, confirmation."""

    def name(self) -> Text:
        return "validate_appointment_form"

    def service_for(self, tracker: Tracker) -> Optional[str]:
        return tracker.get_slot("appointment_service")

    def reask_slots(self):
        return {"appointment_service", "appointment_email", "appointment_confirmed"}

    def reask(self, slot: str, dispatcher: CollectingDispatcher, tracker: Tracker) -> None:
        if slot == "appointment_service":
            dispatcher.utter_message(response="utter_reask_service")
        elif slot == "appointment_email":
            dispatcher.utter_message(response="utter_reask_email")
        else:
            dispatcher.utter_message(response="utter_reask")

    async def extract_appointment_email(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        """A spoken email when asked ("jane at example dot com"); "the email is wrong" asks again."""
        if not is_correction(tracker) or entity_value(tracker, "email"):
            return {}
        text = latest_text(tracker)
        if asked(tracker) == "appointment_email":
            spoken = normalise_email(text)
            return {"appointment_email": spoken} if spoken else {}
        if mentions_change(text) and _mentioned(tracker, "appointment_email") and tracker.get_slot("appointment_email"):
            return {"appointment_email": None}
        return {}

    async def extract_appointment_service(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        """"Change the service" without naming one asks again."""
        if is_correction(tracker) and not entity_value(tracker, "service_type") and tracker.get_slot(
                "appointment_service") and mentions_change(latest_text(tracker)) and _mentioned(tracker, "appointment_service"):
            return {"appointment_service": None}
        return {}

    async def validate_appointment_service(
        self, slot_value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        if slot_value is None:
            return {"appointment_service": None, "appointment_confirmed": None}
        service = str(slot_value).lower()
        if service not in SERVICES:
            dispatcher.utter_message(response="utter_reask_service")
            return {"appointment_service": None}
        result = {"appointment_service": service, "appointment_confirmed": None}
        before = known_before_latest(tracker, "appointment_service")
        if before and before != service and asked(tracker) not in ("appointment_confirmed", None):
            dispatcher.utter_message(response="utter_changed_service", a_service=with_article(service))
        when = _as_datetime(tracker.get_slot("appointment_time"))
        if when and not queries.is_available(service, when):
            tracker.slots["appointment_service"] = service
            result.update(self._check_bookable(when, dispatcher, tracker))
        return result

    async def validate_appointment_email(
        self, slot_value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        if slot_value is None:
            return {"appointment_email": None}
        email = _email_or_token(slot_value, tracker, "validate_email")
        if not email:
            dispatcher.utter_message(response="utter_invalid_email")
            return {"appointment_email": None}
        before = known_before_latest(tracker, "appointment_email")
        if before and before != email and asked(tracker) not in ("appointment_confirmed", "appointment_email", None):
            dispatcher.utter_message(response="utter_changed_email", email=shown(email, tracker))
        return {"appointment_email": email}


class AppointmentTargetValidation(TaskFormValidation):
    """Finding the appointment to move or cancel, with step-up for one the sender may not manage yet.

    ``appointment_ref`` is the appointment the customer means: one they name
    (reference, service or day), the one booked in this conversation, their
    only one, or one they pick from their list. A reference the sender may not
    manage needs the email it was booked with (``appointment_check_email``):
    a match passes step-up for that appointment, a mismatch counts against
    the budget (the same answer whether or not the reference exists), and a
    locked record or "I don't have it" ends the form with a person offered.
    """

    verb = "move"

    async def required_slots(
        self, domain_slots: List[Text], dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[Text]:
        if tracker.get_slot("appointment_check_email") in GAVE_UP:
            return []
        ref = tracker.get_slot("appointment_ref")
        found = queries.appointment_by_ref(ref) if ref else None
        if not ref or (found and verification.may_manage(tracker, found)):
            return [slot for slot in domain_slots if slot != "appointment_check_email"]
        return domain_slots

    def reask_slots(self):
        return {"appointment_ref", "appointment_check_email", "appointment_confirmed"}

    def reask(self, slot: str, dispatcher: CollectingDispatcher, tracker: Tracker):
        if slot == "appointment_ref" and latest_intent(tracker) == "deny":
            dispatcher.utter_message(response="utter_appointment_ref_unknown")
            return {"appointment_check_email": "unknown", REQUESTED_SLOT: None}
        if slot == "appointment_ref":
            dispatcher.utter_message(response="utter_reask_appointment_ref")
        elif slot == "appointment_check_email":
            dispatcher.utter_message(response="utter_reask_check_email")
        else:
            dispatcher.utter_message(response="utter_reask")
        return None

    def choose(self, tracker: Tracker, current: Optional[str]) -> Optional[str]:
        """The reference the latest message (or the conversation) points to, if it settles which one."""
        text = latest_text(tracker)
        named = normalise_ref(entity_value(tracker, "appointment_ref") or ("" if text.startswith("/") else text))
        if named:
            return named
        options = verification.manageable_appointments(tracker)
        service = entity_value(tracker, "service_type")
        picked = [a for a in options if service and a.service_type == service]
        if not picked and (asked(tracker) == "appointment_ref" or self.verb == "cancel" or mentions_change(text)):
            day = parse_when(text, context=Context(now=customer_now(tracker))).date
            picked = [a for a in options if day and a.starts_at.date() == day]
        if len(picked) == 1:
            return picked[0].ref
        if current:
            return current  # the one booked in this conversation, picked or being checked
        if len(options) == 1:
            return options[0].ref
        return None

    async def extract_appointment_ref(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        """The appointment meant: named in this message, or settled by the customer's appointments."""
        if latest_intent(tracker) in ("request_human", "link_channel", "provide_link_code"):
            return {}
        current = tracker.get_slot("appointment_ref")
        activating = (tracker.active_loop or {}).get("name") != self.form_name()
        if current and activating and queries.appointment_by_ref(current) is None:
            current = None  # kept from an earlier booking that is no longer upcoming
        chosen = self.choose(tracker, current)
        if chosen != tracker.get_slot("appointment_ref"):
            return {"appointment_ref": chosen}
        return {}

    async def validate_appointment_ref(
        self, slot_value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        if slot_value is None:
            return {"appointment_ref": None}
        ref = normalise_ref(slot_value)
        if ref is None:
            dispatcher.utter_message(response="utter_reask_appointment_ref")
            return {"appointment_ref": None}
        found = queries.appointment_by_ref(ref)
        if found and verification.may_manage(tracker, found):
            return {"appointment_ref": ref, "appointment_check_email": None}
        if verification.appointment_step_up_locked(tracker, ref):
            dispatcher.utter_message(response="utter_verification_locked")
            return {"appointment_ref": None, "appointment_check_email": "locked"}
        # Whether or not it exists, the next question is the same: the email it was booked with.
        return {"appointment_ref": ref, "appointment_check_email": None}

    async def extract_appointment_check_email(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        """The booking email when asked, typed or said."""
        if asked(tracker) != "appointment_check_email" or not is_correction(tracker):
            return {}
        email = entity_value(tracker, "email") or normalise_email(latest_text(tracker))
        return {"appointment_check_email": email} if email else {}

    async def validate_appointment_check_email(
        self, slot_value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        if slot_value in GAVE_UP or slot_value is None:
            return {"appointment_check_email": slot_value}
        email = _email_or_token(slot_value, tracker, "appointment_step_up")
        if not email:
            dispatcher.utter_message(response="utter_invalid_email")
            return {"appointment_check_email": None}
        ref = tracker.get_slot("appointment_ref") or ""
        if verification.appointment_step_up_locked(tracker, ref):
            dispatcher.utter_message(response="utter_verification_locked")
            return {"appointment_ref": None, "appointment_check_email": "locked"}
        found = queries.appointment_by_ref(ref)
        given = normalise_email(reveal(email, tracker, "appointment_step_up"))
        if found and given and (found.contact_email or "").lower() == given and turn(tracker).identity:
            verification.pass_appointment_step_up(tracker, found)
            dispatcher.utter_message(response="utter_appointment_found", a_service=with_article(found.service_type),
                                     time=say_datetime(found.starts_at))
            return {"appointment_check_email": email}
        result = verification.fail_step_up(tracker, verification.appointment_record(ref))
        dispatcher.utter_message(response="utter_appointment_not_matched")
        if result.locked:
            dispatcher.utter_message(response="utter_verification_locked")
            return {"appointment_ref": None, "appointment_check_email": "locked"}
        return {"appointment_ref": None, "appointment_check_email": None}


class ValidateAppointmentRescheduleForm(AppointmentTargetValidation, AppointmentTimeValidation):
    """Moving an appointment: which one, step-up if needed, the new time, confirmation."""

    def name(self) -> Text:
        return "validate_appointment_reschedule_form"

    def service_for(self, tracker: Tracker) -> Optional[str]:
        appointment = target_appointment(tracker)
        return appointment.service_type if appointment else None

    def anchor(self, tracker: Tracker) -> Optional[dt.datetime]:
        appointment = target_appointment(tracker)
        return appointment.starts_at if appointment else None

    async def extract_appointment_time(self, dispatcher, tracker, domain):
        """Not before the appointment is known: "move my friday one" names it, it is no new time."""
        if not target_appointment(tracker) and asked(tracker) in ("appointment_ref", "appointment_check_email"):
            return {}
        return await super().extract_appointment_time(dispatcher, tracker, domain)


class ValidateAppointmentCancelForm(AppointmentTargetValidation):
    """Cancelling an appointment: which one, step-up if needed, confirmation."""

    verb = "cancel"
    confirmation_slot = "appointment_confirmed"

    def name(self) -> Text:
        return "validate_appointment_cancel_form"


class ActionAskAppointmentRef(Action):
    """Asks which appointment: the customer's own as buttons, or its reference when none is known."""

    def name(self) -> Text:
        return "action_ask_appointment_ref"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict):
        verb = "cancel" if (tracker.active_loop or {}).get("name") == "appointment_cancel_form" else "move"
        options = verification.manageable_appointments(tracker)
        if options:
            dispatcher.utter_message(
                response="utter_ask_which_appointment", verb=verb,
                buttons=[{"title": describe(a), "payload": f'/provide_info{{"appointment_ref": "{a.ref}"}}'}
                         for a in options[:5]],
            )
        else:
            dispatcher.utter_message(response="utter_ask_appointment_ref")
        return []


class ActionAskAppointmentTime(Action):
    """Asks when; names the day (or the time) the customer already gave."""

    def name(self) -> Text:
        return "action_ask_appointment_time"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict):
        partial_date = _as_date(tracker.get_slot("appointment_partial_date"))
        partial_time = _as_time(tracker.get_slot("appointment_partial_time"))
        if partial_date:
            dispatcher.utter_message(response="utter_ask_time_on_date", date=say_date(partial_date))
        elif partial_time:
            dispatcher.utter_message(response="utter_ask_day_for_time", time=say_time(partial_time))
        elif (tracker.active_loop or {}).get("name") == "appointment_reschedule_form":
            appointment = target_appointment(tracker)
            if appointment:
                dispatcher.utter_message(response="utter_ask_new_time", a_service=with_article(appointment.service_type),
                                         time=say_datetime(appointment.starts_at))
            else:
                dispatcher.utter_message(response="utter_ask_appointment_time")
        else:
            dispatcher.utter_message(response="utter_ask_appointment_time")
        return []


class ActionAskAppointmentConfirmed(Action):
    """Reads back what is about to change before anything is written."""

    def name(self) -> Text:
        return "action_ask_appointment_confirmed"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict):
        loop = (tracker.active_loop or {}).get("name")
        when = _as_datetime(tracker.get_slot("appointment_time"))
        if loop == "appointment_form":
            dispatcher.utter_message(
                response="utter_confirm_booking",
                a_service=with_article(tracker.get_slot("appointment_service") or "new"),
                time=say_datetime(when) if when else "",
                email=shown(tracker.get_slot("appointment_email"), tracker),
            )
            return []
        appointment = target_appointment(tracker)
        if appointment is None:
            dispatcher.utter_message(response="utter_no_appointments")
            return []
        if loop == "appointment_reschedule_form":
            dispatcher.utter_message(
                response="utter_confirm_reschedule",
                service=appointment.service_type,
                ref=appointment.ref,
                old_time=say_datetime(appointment.starts_at),
                time=say_datetime(when) if when else "",
            )
        else:
            dispatcher.utter_message(
                response="utter_confirm_cancel",
                service=appointment.service_type,
                ref=appointment.ref,
                time=say_datetime(appointment.starts_at),
            )
        return []


def _reset() -> List[Dict[Text, Any]]:
    return [
        SlotSet("appointment_service", None),
        SlotSet("appointment_time", None),
        SlotSet("appointment_partial_date", None),
        SlotSet("appointment_partial_time", None),
        SlotSet("appointment_confirmed", None),
        SlotSet("appointment_check_email", None),
    ]


class ActionBookAppointment(Action):
    """Writes the booking, unless the slot was taken since it was checked."""

    def name(self) -> Text:
        return "action_book_appointment"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict):
        service = tracker.get_slot("appointment_service")
        when = _as_datetime(tracker.get_slot("appointment_time"))
        email = tracker.get_slot("appointment_email")
        if not (service and when and tracker.get_slot("appointment_confirmed")):
            dispatcher.utter_message(response="utter_task_stopped")
            return _reset()
        try:
            booked = queries.book_appointment(customer_ref(tracker), service, when,
                                              reveal(email, tracker, "booking_confirmation"),
                                              booked_by=turn(tracker).identity)
        except queries.SlotUnavailable:
            dispatcher.utter_message(response="utter_slot_taken", time=say_datetime(when))
            dispatcher.utter_message(response="utter_anything_else")
            return _reset()
        journeys.emit_safely("appointment_booked", customer_ref(tracker),
                             {"service_type": service, "appointment_ref": booked.ref}, occurrence=booked.ref)
        dispatcher.utter_message(
            response="utter_appointment_booked",
            service=service,
            time=say_datetime(booked.starts_at),
            ref=booked.ref,
            email=shown(email, tracker),
        )
        return _reset() + [SlotSet("appointment_ref", booked.ref)]


def _gave_up(tracker: Tracker) -> bool:
    return tracker.get_slot("appointment_check_email") in GAVE_UP


class ActionRescheduleAppointment(Action):
    """Moves the appointment the customer chose to the confirmed time."""

    def name(self) -> Text:
        return "action_reschedule_appointment"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict):
        appointment = target_appointment(tracker)
        when = _as_datetime(tracker.get_slot("appointment_time"))
        if appointment is None:
            if not _gave_up(tracker):  # else the form already said why and offered a person
                dispatcher.utter_message(response="utter_no_appointments")
            return _reset()
        if not (when and tracker.get_slot("appointment_confirmed")):
            dispatcher.utter_message(response="utter_appointment_kept")
            return _reset()
        try:
            moved = queries.reschedule_appointment(appointment.customer_ref, appointment.ref, when)
        except (queries.SlotUnavailable, LookupError):
            dispatcher.utter_message(response="utter_slot_taken", time=say_datetime(when))
            return _reset()
        dispatcher.utter_message(
            response="utter_appointment_rescheduled", ref=moved.ref, time=say_datetime(moved.starts_at)
        )
        return _reset() + [SlotSet("appointment_ref", moved.ref)]


class ActionCancelAppointment(Action):
    """Cancels the appointment the customer chose once confirmed."""

    def name(self) -> Text:
        return "action_cancel_appointment"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict):
        appointment = target_appointment(tracker)
        if appointment is None:
            if not _gave_up(tracker):
                dispatcher.utter_message(response="utter_no_appointments")
            return _reset()
        if tracker.get_slot("appointment_confirmed"):
            queries.cancel_appointment(appointment.customer_ref, appointment.ref)
            dispatcher.utter_message(
                response="utter_appointment_cancelled",
                ref=appointment.ref,
                time=say_datetime(appointment.starts_at),
            )
            return _reset() + [SlotSet("appointment_ref", None)]
        dispatcher.utter_message(response="utter_appointment_kept")
        return _reset()
