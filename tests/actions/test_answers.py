"""Forms read answers the way customers give them: partial answers, corrections, changes of mind.

Each test runs a form's validator the way Rasa does after a customer message
(``form_turn`` builds that tracker), against the real business database.
"""
import datetime as dt

import pytest
from rasa_sdk.executor import CollectingDispatcher

from actions.appointments import (
    ActionAskAppointmentRef,
    ActionAskAppointmentTime,
    ValidateAppointmentCancelForm,
    ValidateAppointmentForm,
    ValidateAppointmentRescheduleForm,
)
from actions.feedback import ValidateFeedbackForm
from actions.handoff import ValidateHandoffMessageForm
from actions.orders import ValidateOrderStatusForm
from actions.troubleshooting import ValidateTroubleshootForm
from tests.actions.helpers import entity, form_turn, load_domain, make_tracker, responses, slot_events
from threadline.db import queries

pytestmark = [pytest.mark.services, pytest.mark.usefixtures("business_db")]
DOMAIN = load_domain()
IDENTITY = {"identity": "identity-under-test"}


def open_day(days_ahead: int) -> dt.date:
    day = dt.date.today() + dt.timedelta(days=days_ahead)
    while day.weekday() == 6:
        day += dt.timedelta(days=1)
    return day


def at(day: dt.date, hour: int, minute: int = 0) -> str:
    return dt.datetime.combine(day, dt.time(hour, minute)).isoformat(timespec="minutes")


async def run(validator, tracker):
    dispatcher = CollectingDispatcher()
    events = await validator.run(dispatcher, tracker, DOMAIN)
    return slot_events(events), responses(dispatcher), dispatcher


def booking(day, **slots):
    return dict({"appointment_service": "repair", "appointment_time": at(day, 10)}, **slots)


# ------------------------------------------------------------------ booking


async def test_actually_make_it_11am_while_the_email_is_asked_changes_the_time_and_goes_on():
    day = open_day(11)
    tracker = form_turn("appointment_form", booking(day), "appointment_email", "Actually make it 11am", "stop_task")
    slots, said, _ = await run(ValidateAppointmentForm(), tracker)
    assert slots["appointment_time"] == at(day, 11)
    assert "utter_changed_time" in said and "utter_task_stopped" not in said
    assert slots.get("appointment_email") is None  # still to be asked: the booking goes on


async def test_no_11_not_10_at_the_confirmation_changes_the_time_and_asks_again():
    day = open_day(12)
    slots_before = booking(day, appointment_email="jane@example.com")
    tracker = form_turn("appointment_form", slots_before, "appointment_confirmed", "no, 11 not 10", "deny",
                        candidates={"appointment_confirmed": False})
    slots, said, _ = await run(ValidateAppointmentForm(), tracker)
    assert slots["appointment_time"] == at(day, 11)
    assert slots["appointment_confirmed"] is None  # read back and asked again, not "let's find another time"
    assert "utter_appointment_change_what" not in said


async def test_yes_with_a_change_is_not_taken_as_the_confirmation():
    day = open_day(13)
    if day.weekday() == 3:  # already a Thursday: "make it thursday" would change nothing
        day = open_day(14)
    thursday = day - dt.timedelta(days=day.weekday()) + dt.timedelta(days=3)  # Thursday of that week
    tracker = form_turn("appointment_form", booking(day, appointment_email="jane@example.com"),
                        "appointment_confirmed", "yes but make it thursday", "affirm",
                        candidates={"appointment_confirmed": True})
    slots, _, _ = await run(ValidateAppointmentForm(), tracker)
    assert slots["appointment_time"] == at(thursday, 10) and slots["appointment_confirmed"] is None


async def test_wrong_email_at_the_confirmation_replaces_the_email_and_asks_again():
    day = open_day(14)
    tracker = form_turn("appointment_form", booking(day, appointment_email="jane@example.com"),
                        "appointment_confirmed", "wrong email, it's sam@example.com", "provide_info",
                        entities=[entity("email", "sam@example.com", "RegexEntityExtractor")],
                        candidates={"appointment_email": "sam@example.com"})
    slots, _, _ = await run(ValidateAppointmentForm(), tracker)
    assert slots["appointment_email"] == "sam@example.com" and slots["appointment_confirmed"] is None


async def test_a_plain_no_at_the_confirmation_looks_for_another_time():
    day = open_day(15)
    tracker = form_turn("appointment_form", booking(day, appointment_email="jane@example.com"),
                        "appointment_confirmed", "no", "deny", candidates={"appointment_confirmed": False})
    slots, said, _ = await run(ValidateAppointmentForm(), tracker)
    assert said == ["utter_appointment_change_what"] and slots["appointment_time"] is None


@pytest.mark.parametrize("text,hour", [("at 9", 9), ("noon", 12), ("3 o'clock", 15), ("11", 11)])
async def test_a_time_alone_fills_the_day_given_before(text, hour):
    day = open_day(16)
    tracker = form_turn("appointment_form", {"appointment_service": "consultation",
                                            "appointment_partial_date": day.isoformat()},
                        "appointment_time", text, "provide_info", candidates={"appointment_time": text})
    slots, _, _ = await run(ValidateAppointmentForm(), tracker)
    assert slots["appointment_time"] == at(day, hour)


async def test_half_past_offers_the_nearest_times_on_the_hour_and_keeps_the_day():
    day = open_day(17)
    tracker = form_turn("appointment_form", {"appointment_service": "repair",
                                            "appointment_partial_date": day.isoformat()},
                        "appointment_time", "half past two", "out_of_scope",
                        candidates={"appointment_time": "half past two"})
    slots, said, dispatcher = await run(ValidateAppointmentForm(), tracker)
    assert said == ["utter_on_the_hour"] and slots["appointment_partial_date"] == day.isoformat()
    offered = [b["title"] for b in dispatcher.messages[0]["buttons"]]
    assert offered and all(t.endswith(("14:00", "15:00")) for t in offered)


async def test_a_time_with_no_day_is_kept_and_the_day_asked_for():
    tracker = form_turn("appointment_form", {"appointment_service": "repair"}, "appointment_time", "at 3",
                        candidates={"appointment_time": "at 3"})
    slots, _, _ = await run(ValidateAppointmentForm(), tracker)
    assert slots["appointment_time"] is None and slots["appointment_partial_time"] == "15:00"
    dispatcher = CollectingDispatcher()
    await ActionAskAppointmentTime().run(dispatcher, make_tracker({"appointment_partial_time": "15:00"}), {})
    assert responses(dispatcher) == ["utter_ask_day_for_time"]
    day = open_day(18)
    tracker = form_turn("appointment_form", {"appointment_service": "repair", "appointment_partial_time": "15:00"},
                        "appointment_time", f"{day:%A %d %B}", candidates={"appointment_time": f"{day:%A %d %B}"})
    slots, _, _ = await run(ValidateAppointmentForm(), tracker)
    assert slots["appointment_time"] == at(day, 15)


async def test_the_same_time_on_another_day_after_a_no():
    day = open_day(19)
    friday = day - dt.timedelta(days=day.weekday()) + dt.timedelta(days=4)  # Friday of that week
    history = [{"event": "slot", "name": "appointment_time", "value": at(day, 16)},
               {"event": "slot", "name": "appointment_time", "value": None}]
    tracker = form_turn("appointment_form", {"appointment_service": "installation"}, "appointment_time",
                        "the same time on Friday", candidates={"appointment_time": "the same time on Friday"},
                        history=history)
    slots, _, _ = await run(ValidateAppointmentForm(), tracker)
    assert slots["appointment_time"] == at(friday, 16)


async def test_an_unplaceable_answer_gets_a_specific_reask_not_the_fallback():
    day = open_day(20)
    tracker = form_turn("appointment_form", {"appointment_service": "repair",
                                            "appointment_partial_date": day.isoformat()},
                        "appointment_time", "whenever really", "nlu_fallback",
                        candidates={"appointment_time": "whenever really"})
    slots, said, _ = await run(ValidateAppointmentForm(), tracker)
    assert said == ["utter_no_time_understood"] and "appointment_time" in slots


async def test_gibberish_for_the_service_is_reasked_in_the_form():
    tracker = form_turn("appointment_form", {}, "appointment_service", "the thing with the stuff", "nlu_fallback")
    slots, said, _ = await run(ValidateAppointmentForm(), tracker)
    assert said == ["utter_reask_service"] and "appointment_service" in slots  # the form keeps the message


async def test_a_store_question_that_names_a_day_is_not_a_new_time():
    day = open_day(21)
    tracker = form_turn("appointment_form", booking(day), "appointment_email", "are you open on saturday?", "ask_faq",
                        entities=[entity("datetime", "saturday")])
    slots, said, _ = await run(ValidateAppointmentForm(), tracker)
    assert set(slots) <= {"requested_slot"} and said == []  # nothing taken: the form lets the FAQ rule answer


async def test_changing_the_service_keeps_the_time():
    day = open_day(22)
    tracker = form_turn("appointment_form", booking(day), "appointment_email", "actually make it an installation",
                        entities=[entity("service_type", "installation")],
                        candidates={"appointment_service": "installation"})
    slots, said, _ = await run(ValidateAppointmentForm(), tracker)
    assert slots["appointment_service"] == "installation" and "utter_changed_service" in said
    assert slots.get("appointment_time", at(day, 10)) == at(day, 10)


async def test_a_spoken_email_is_understood():
    tracker = form_turn("appointment_form", booking(open_day(23)), "appointment_email", "jane dot doe at example dot com")
    slots, _, _ = await run(ValidateAppointmentForm(), tracker)
    assert slots["appointment_email"] == "jane.doe@example.com"


# ------------------------------------------------------------------ moving and cancelling


def book(customer, service, when, email="jane@example.com", identity="identity-under-test"):
    return queries.book_appointment(customer, service, when, email, booked_by=identity)


async def test_the_monday_after_moves_the_appointment_just_booked():
    day = open_day(24)
    booked = book("c_move_after", "installation", dt.datetime.combine(day, dt.time(10)))
    monday = day + dt.timedelta(days=(0 - day.weekday()) % 7 or 7)
    text = "I need to move my appointment to the monday after at 2pm"
    tracker = form_turn("appointment_reschedule_form", {"appointment_ref": booked.ref}, None, text,
                        "reschedule_appointment", entities=[entity("datetime", "after at 2pm")],
                        candidates={"appointment_ref": booked.ref, "appointment_time": "after at 2pm"},
                        activating=True, sender_id="c_move_after", metadata=IDENTITY)
    slots, said, _ = await run(ValidateAppointmentRescheduleForm(), tracker)
    assert slots["appointment_time"] == at(monday, 14)
    assert slots.get("requested_slot") == "appointment_confirmed"


async def test_with_two_appointments_the_customer_picks_one():
    day = open_day(25)
    first = book("c_two", "repair", dt.datetime.combine(day, dt.time(9)))
    second = book("c_two", "consultation", dt.datetime.combine(open_day(29), dt.time(11)))
    tracker = form_turn("appointment_reschedule_form", {}, None, "move my appointment", "reschedule_appointment",
                        activating=True, sender_id="c_two", metadata=IDENTITY)
    slots, _, _ = await run(ValidateAppointmentRescheduleForm(), tracker)
    assert slots.get("requested_slot") == "appointment_ref"
    ask = CollectingDispatcher()
    await ActionAskAppointmentRef().run(ask, make_tracker(sender_id="c_two", metadata=IDENTITY,
                                                          active_loop="appointment_reschedule_form"), {})
    assert [b["payload"] for b in ask.messages[0]["buttons"]] == [
        f'/provide_info{{"appointment_ref": "{first.ref}"}}', f'/provide_info{{"appointment_ref": "{second.ref}"}}']
    tracker = form_turn("appointment_cancel_form", {}, None, "cancel the consultation", "cancel_appointment",
                        entities=[entity("service_type", "consultation")], activating=True,
                        sender_id="c_two", metadata=IDENTITY)
    slots, _, _ = await run(ValidateAppointmentCancelForm(), tracker)
    assert slots["appointment_ref"] == second.ref


async def test_an_unknown_customer_gives_the_reference_and_the_booking_email():
    day = open_day(26)
    booked = book("c_booked_elsewhere", "repair", dt.datetime.combine(day, dt.time(12)), identity="someone-else")
    stranger = {"identity": "identity-of-a-stranger", "source": "source-of-a-stranger"}
    start = form_turn("appointment_cancel_form", {}, None, "Cancel my appointment", "cancel_appointment",
                      activating=True, sender_id="c_stranger", metadata=stranger)
    slots, _, _ = await run(ValidateAppointmentCancelForm(), start)
    assert slots.get("requested_slot") == "appointment_ref"
    ask = CollectingDispatcher()
    await ActionAskAppointmentRef().run(ask, make_tracker(sender_id="c_stranger", metadata=stranger), {})
    assert responses(ask) == ["utter_ask_appointment_ref"]

    given = form_turn("appointment_cancel_form", {}, "appointment_ref", f"it's {booked.ref.lower()}", "provide_info",
                      sender_id="c_stranger", metadata=stranger)
    slots, _, _ = await run(ValidateAppointmentCancelForm(), given)
    # the form asks the next empty slot: the email it was booked with
    assert slots["appointment_ref"] == booked.ref and slots.get("requested_slot") is None
    assert await ValidateAppointmentCancelForm().required_slots(
        DOMAIN["forms"]["appointment_cancel_form"]["required_slots"], CollectingDispatcher(), given, DOMAIN
    ) == ["appointment_ref", "appointment_check_email", "appointment_confirmed"]

    wrong = form_turn("appointment_cancel_form", {"appointment_ref": booked.ref}, "appointment_check_email",
                      "not@mine.com", entities=[entity("email", "not@mine.com")],
                      candidates={"appointment_check_email": "not@mine.com"}, sender_id="c_stranger", metadata=stranger)
    slots, said, _ = await run(ValidateAppointmentCancelForm(), wrong)
    assert said == ["utter_appointment_not_matched"] and slots["appointment_ref"] is None

    right = form_turn("appointment_cancel_form", {"appointment_ref": booked.ref}, "appointment_check_email",
                      "jane@example.com", entities=[entity("email", "jane@example.com")],
                      candidates={"appointment_check_email": "jane@example.com"}, sender_id="c_stranger",
                      metadata=stranger)
    slots, said, _ = await run(ValidateAppointmentCancelForm(), right)
    assert said == ["utter_appointment_found"] and slots["requested_slot"] == "appointment_confirmed"


async def test_wrong_answers_lock_the_appointment_and_offer_a_person(monkeypatch):
    monkeypatch.setenv("STEPUP_FAIL_LIMIT", "2")
    booked = book("c_locked", "repair", dt.datetime.combine(open_day(27), dt.time(13)), identity="someone-else")
    guesser = {"identity": "identity-of-a-guesser", "source": "source-of-a-guesser"}
    said = []
    for guess in ("a@example.com", "b@example.com", "c@example.com"):
        tracker = form_turn("appointment_cancel_form", {"appointment_ref": booked.ref}, "appointment_check_email",
                            guess, entities=[entity("email", guess)], candidates={"appointment_check_email": guess},
                            sender_id="c_guesser", metadata=guesser)
        slots, said, _ = await run(ValidateAppointmentCancelForm(), tracker)
        if slots.get("appointment_check_email") == "locked":
            break
    assert slots["appointment_check_email"] == "locked" and "utter_verification_locked" in said
    assert slots.get("requested_slot") is None  # the form ends; nothing more is asked


async def test_i_dont_have_the_reference_ends_the_search_with_a_person_offered():
    tracker = form_turn("appointment_cancel_form", {}, "appointment_ref", "I don't have it", "deny",
                        sender_id="c_no_ref")
    slots, said, _ = await run(ValidateAppointmentCancelForm(), tracker)
    assert said == ["utter_appointment_ref_unknown"]
    assert slots["appointment_check_email"] == "unknown" and slots["requested_slot"] is None


async def test_a_correction_at_the_move_confirmation_counts_from_the_appointment():
    day = open_day(28)
    booked = book("c_move_fix", "repair", dt.datetime.combine(day, dt.time(10)))
    slots_before = {"appointment_ref": booked.ref, "appointment_time": at(day + dt.timedelta(days=1), 10)}
    tracker = form_turn("appointment_reschedule_form", slots_before, "appointment_confirmed",
                        "no, a day later than that", "deny", candidates={"appointment_confirmed": False},
                        sender_id="c_move_fix", metadata=IDENTITY)
    slots, _, _ = await run(ValidateAppointmentRescheduleForm(), tracker)
    # "later" counts from the appointment being moved, and the answer is read back before anything changes
    assert slots["appointment_time"] == at(day + dt.timedelta(days=1), 10) or slots["appointment_confirmed"] is None


# ------------------------------------------------------------------ orders


async def test_a_postal_code_misread_as_an_order_number_keeps_the_order():
    tracker = form_turn("order_status_form", {"order_number": "482913"}, "verification_postal_code",
                        "sorry the zip is 94105", entities=[entity("order_number", "94105")],
                        candidates={"order_number": "94105", "verification_postal_code": "sorry the zip is 94105"})
    slots, said, _ = await run(ValidateOrderStatusForm(), tracker)
    assert slots["order_number"] == "482913" and slots["verification_postal_code"] == "ok"
    assert "utter_invalid_order_number" not in said


async def test_wrong_order_number_switches_to_the_new_one():
    tracker = form_turn("order_status_form", {"order_number": "482913"}, "verification_postal_code",
                        "wrong order number, it's 661204",
                        entities=[entity("order_number", "661204", "RegexEntityExtractor")],
                        candidates={"order_number": "661204"})
    slots, _, _ = await run(ValidateOrderStatusForm(), tracker)
    assert slots["order_number"] == "661204" and slots["verification_postal_code"] is None


async def test_no_postal_code_in_the_answer_is_asked_again_without_counting_a_failure():
    tracker = form_turn("order_status_form", {"order_number": "482913"}, "verification_postal_code",
                        "I don't remember", "deny", candidates={"verification_postal_code": "I don't remember"},
                        metadata={"identity": "identity-postal", "source": "source-postal"})
    slots, said, _ = await run(ValidateOrderStatusForm(), tracker)
    assert said == ["utter_reask_postal_code"] and slots["verification_postal_code"] is None
    from threadline.ownership import StepUp
    assert StepUp().fail("identity-postal", "source-postal", "order:482913").remaining == StepUp().limit - 1


# ------------------------------------------------------------------ troubleshooting, feedback, handoff


async def test_the_same_problem_said_again_means_the_step_did_not_help():
    tracker = form_turn("troubleshoot_form", {"troubleshoot_problem": "internet", "troubleshoot_step": 1},
                        "troubleshoot_outcome", "my wifi is still down", "report_problem",
                        entities=[entity("problem_type", "internet")], candidates={"troubleshoot_problem": "internet"})
    slots, said, _ = await run(ValidateTroubleshootForm(), tracker)
    assert slots["troubleshoot_step"] == 2 and "utter_troubleshoot_step_intro" not in said


async def test_another_problem_starts_its_own_steps():
    tracker = form_turn("troubleshoot_form", {"troubleshoot_problem": "internet", "troubleshoot_step": 2},
                        "troubleshoot_outcome", "sorry, I meant my laptop won't turn on", "report_problem",
                        entities=[entity("problem_type", "power")], candidates={"troubleshoot_problem": "power"})
    slots, said, _ = await run(ValidateTroubleshootForm(), tracker)
    assert slots["troubleshoot_problem"] == "power" and slots["troubleshoot_step"] == 0
    assert said == ["utter_troubleshoot_step_intro"]


async def test_an_unclear_answer_to_a_step_repeats_it():
    tracker = form_turn("troubleshoot_form", {"troubleshoot_problem": "internet", "troubleshoot_step": 1},
                        "troubleshoot_outcome", "what do you mean by WAN", "nlu_fallback")
    slots, said, _ = await run(ValidateTroubleshootForm(), tracker)
    assert said == ["utter_reask_step"] and "troubleshoot_outcome" in slots


async def test_no_with_a_reason_answers_both_feedback_questions():
    tracker = form_turn("feedback_form", {}, "feedback_helpful", "no, the steps were confusing", "deny",
                        candidates={"feedback_helpful": False})
    slots, _, _ = await run(ValidateFeedbackForm(), tracker)
    assert slots["feedback_helpful"] is False and slots["feedback_comment"] == "no, the steps were confusing"


async def test_actually_it_did_help_changes_the_answer_instead_of_becoming_the_comment():
    tracker = form_turn("feedback_form", {"feedback_helpful": False}, "feedback_comment", "actually it did help",
                        "affirm", candidates={"feedback_comment": "actually it did help"})
    slots, _, _ = await run(ValidateFeedbackForm(), tracker)
    assert slots["feedback_helpful"] is True and slots["feedback_comment"] is None


async def test_never_mind_to_the_comment_keeps_the_answer_without_one():
    tracker = form_turn("feedback_form", {"feedback_helpful": False}, "feedback_comment", "never mind", "stop_task")
    slots, _, _ = await run(ValidateFeedbackForm(), tracker)
    assert slots["feedback_comment"] == ""


async def test_call_me_back_instead_switches_what_the_team_is_sent():
    tracker = form_turn("handoff_message_form", {"handoff_option": "message"}, "handoff_message",
                        "actually can you call me back instead", candidates={"handoff_message":
                                                                             "actually can you call me back instead"})
    slots, _, _ = await run(ValidateHandoffMessageForm(), tracker)
    assert slots["handoff_option"] == "callback" and slots["handoff_message"] is None
    message = "please call me back on +1 555 0100 after 6pm"
    tracker = form_turn("handoff_message_form", {"handoff_option": "message"}, "handoff_message", message,
                        candidates={"handoff_message": message})
    slots, _, _ = await run(ValidateHandoffMessageForm(), tracker)
    assert slots["handoff_message"] == message  # a real message is kept as written


async def test_still_not_working_without_naming_the_problem_is_the_next_step():
    tracker = form_turn("troubleshoot_form", {"troubleshoot_problem": "power", "troubleshoot_step": 0},
                        "troubleshoot_outcome", "it's still not working", "report_problem")
    slots, _, _ = await run(ValidateTroubleshootForm(), tracker)
    assert slots["troubleshoot_step"] == 1 and slots["troubleshoot_outcome"] is None


async def test_actually_never_mind_while_the_time_is_asked_is_a_stop():
    tracker = form_turn("appointment_form", {"appointment_service": "repair"}, "appointment_time",
                        "actually never mind", "stop_task")
    slots, said, _ = await run(ValidateAppointmentForm(), tracker)
    assert set(slots) <= {"requested_slot"} and said == []  # nothing taken: the stop rule answers
