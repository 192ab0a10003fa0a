"""Booking, rescheduling and cancelling appointments against real availability."""
import abc
import datetime as dt
import re
from typing import Any, Dict, List, Optional, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.continuity import ContinuityFormValidation

from actions import verification
from actions.context import customer_ref, turn
from actions.datetimes import parse_when
from actions.formatting import say_date, say_datetime
from actions.personal_data import reveal, shown
from threadline.db import queries
from threadline.db.seed import OPEN_DAYS, OPEN_HOURS, SERVICES

EMAIL_RE = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$")
TIME_SLOTS = ("appointment_time", "appointment_partial_date")


def next_appointment(tracker: Tracker) -> Optional[queries.AppointmentInfo]:
    """The soonest upcoming appointment this sender may manage (what "my appointment" means)."""
    upcoming = verification.manageable_appointments(tracker)
    return upcoming[0] if upcoming else None


def _as_datetime(value: Any) -> Optional[dt.datetime]:
    try:
        return dt.datetime.fromisoformat(str(value))
    except ValueError:
        return None


def _previous_time(tracker: Tracker) -> Optional[dt.datetime]:
    """The last time we accepted, before the customer's latest message."""
    for event in reversed(tracker.events):
        if event.get("event") == "slot" and event.get("name") == "appointment_time":
            value = _as_datetime(event.get("value"))
            if value:
                return value
    return None


class AppointmentTimeValidation(ContinuityFormValidation):
    """Shared by the booking and rescheduling forms: understands a requested time.

    Subclasses say which service the time is for (``service_for``). The
    validator accepts "next Tuesday at 3pm", keeps a date given alone until a
    time follows ("Tuesday" ... "3pm"), applies a bare time to the date chosen
    before (a correction like "make it 4pm"), and only accepts a time that is
    in the future, in opening hours and free, offering the nearest free times
    as buttons otherwise. Accepting a new time clears an earlier confirmation.
    Being abstract, this class is never registered as an action itself.
    """

    @abc.abstractmethod
    def service_for(self, tracker: Tracker) -> Optional[str]:
        """The service the requested time is for."""

    async def validate_appointment_time(
        self, slot_value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        when = _as_datetime(slot_value)
        if when is None:
            parsed = parse_when(str(slot_value or ""))
            partial = tracker.get_slot("appointment_partial_date")
            previous = _previous_time(tracker)
            date = parsed.date or (dt.date.fromisoformat(partial) if partial else None)
            if date is None and parsed.time and previous:
                date = previous.date()
            time = parsed.time
            if date and time is None:
                if previous and not partial and parsed.date:
                    time = previous.time()
                else:
                    return {"appointment_time": None, "appointment_partial_date": date.isoformat()}
            if date is None and time is not None:
                today = dt.datetime.now()
                date = today.date() if dt.datetime.combine(today.date(), time) > today else today.date() + dt.timedelta(days=1)
            if date is None or time is None:
                dispatcher.utter_message(response="utter_invalid_time")
                return {"appointment_time": None}
            when = dt.datetime.combine(date, time)
        return self._check_bookable(when, dispatcher, tracker)

    def _check_bookable(
        self, when: dt.datetime, dispatcher: CollectingDispatcher, tracker: Tracker
    ) -> Dict[Text, Any]:
        cleared = {"appointment_time": None, "appointment_partial_date": None}
        if when <= dt.datetime.now():
            dispatcher.utter_message(response="utter_time_in_past")
            return cleared
        if when.weekday() not in OPEN_DAYS or when.hour not in OPEN_HOURS or when.minute:
            dispatcher.utter_message(response="utter_outside_hours")
            return cleared
        service = self.service_for(tracker)
        if service and not queries.is_available(service, when):
            alternatives = queries.free_slots_near(service, when)
            dispatcher.utter_message(
                response="utter_slot_taken",
                time=say_datetime(when),
                buttons=[
                    {"title": say_datetime(t), "payload": f'/provide_info{{"datetime": "{t.isoformat(timespec="minutes")}"}}'}
                    for t in alternatives
                ],
            )
            return cleared
        return {
            "appointment_time": when.isoformat(timespec="minutes"),
            "appointment_partial_date": None,
            "appointment_confirmed": None,
        }

    async def validate_appointment_confirmed(
        self, slot_value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        if slot_value is True:
            return {"appointment_confirmed": True}
        dispatcher.utter_message(response="utter_appointment_change_what")
        return {"appointment_confirmed": None, "appointment_time": None}


class ValidateAppointmentForm(AppointmentTimeValidation):
    """Booking: service, time, contact email, confirmation."""

    def name(self) -> Text:
        return "validate_appointment_form"

    def service_for(self, tracker: Tracker) -> Optional[str]:
        return tracker.get_slot("appointment_service")

    async def validate_appointment_service(
        self, slot_value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        service = str(slot_value or "").lower()
        if service not in SERVICES:
            return {"appointment_service": None}
        result = {"appointment_service": service, "appointment_confirmed": None}
        when = _as_datetime(tracker.get_slot("appointment_time"))
        if when and not queries.is_available(service, when):
            result.update(self._check_bookable(when, dispatcher, tracker))
        return result

    async def validate_appointment_email(
        self, slot_value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        email = str(slot_value or "").strip()
        if not EMAIL_RE.match(reveal(email, tracker, "validate_email") or ""):
            dispatcher.utter_message(response="utter_invalid_email")
            return {"appointment_email": None}
        return {"appointment_email": email.lower()}  # a vault token stays a token


class ValidateAppointmentRescheduleForm(AppointmentTimeValidation):
    """Rescheduling the customer's next appointment: new time, confirmation."""

    def name(self) -> Text:
        return "validate_appointment_reschedule_form"

    def service_for(self, tracker: Tracker) -> Optional[str]:
        appointment = next_appointment(tracker)
        return appointment.service_type if appointment else None

    async def required_slots(
        self, domain_slots: List[Text], dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[Text]:
        return domain_slots if next_appointment(tracker) else []


class ValidateAppointmentCancelForm(ContinuityFormValidation):
    """Cancelling the customer's next appointment: only a confirmation."""

    def name(self) -> Text:
        return "validate_appointment_cancel_form"

    async def required_slots(
        self, domain_slots: List[Text], dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[Text]:
        return domain_slots if next_appointment(tracker) else []


class ActionAskAppointmentTime(Action):
    """Asks when; names the day when the customer already gave one."""

    def name(self) -> Text:
        return "action_ask_appointment_time"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict):
        partial = tracker.get_slot("appointment_partial_date")
        if partial:
            dispatcher.utter_message(
                response="utter_ask_time_on_date", date=say_date(dt.date.fromisoformat(partial))
            )
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
                service=tracker.get_slot("appointment_service"),
                time=say_datetime(when) if when else "",
            )
            return []
        appointment = next_appointment(tracker)
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
        SlotSet("appointment_confirmed", None),
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
        dispatcher.utter_message(
            response="utter_appointment_booked",
            service=service,
            time=say_datetime(booked.starts_at),
            ref=booked.ref,
            email=shown(email, tracker),
        )
        return _reset() + [SlotSet("appointment_ref", booked.ref)]


class ActionRescheduleAppointment(Action):
    """Moves the customer's next appointment to the confirmed time."""

    def name(self) -> Text:
        return "action_reschedule_appointment"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict):
        appointment = next_appointment(tracker)
        when = _as_datetime(tracker.get_slot("appointment_time"))
        if appointment is None:
            dispatcher.utter_message(response="utter_no_appointments")
            return _reset()
        if not (when and tracker.get_slot("appointment_confirmed")):
            dispatcher.utter_message(response="utter_appointment_kept")
            return _reset()
        try:
            moved = queries.reschedule_appointment(customer_ref(tracker), appointment.ref, when)
        except (queries.SlotUnavailable, LookupError):
            dispatcher.utter_message(response="utter_slot_taken", time=say_datetime(when))
            return _reset()
        dispatcher.utter_message(
            response="utter_appointment_rescheduled", ref=moved.ref, time=say_datetime(moved.starts_at)
        )
        return _reset() + [SlotSet("appointment_ref", moved.ref)]


class ActionCancelAppointment(Action):
    """Cancels the customer's next appointment once confirmed."""

    def name(self) -> Text:
        return "action_cancel_appointment"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict):
        appointment = next_appointment(tracker)
        if appointment is None:
            dispatcher.utter_message(response="utter_no_appointments")
        elif tracker.get_slot("appointment_confirmed"):
            queries.cancel_appointment(customer_ref(tracker), appointment.ref)
            dispatcher.utter_message(
                response="utter_appointment_cancelled",
                ref=appointment.ref,
                time=say_datetime(appointment.starts_at),
            )
        else:
            dispatcher.utter_message(response="utter_appointment_kept")
        return _reset()
