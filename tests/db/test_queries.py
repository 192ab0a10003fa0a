"""The business database layer on a real database (SQLite, or PostgreSQL via DATABASE_URL)."""
import datetime as dt
import threading

import pytest
from sqlalchemy import func, select

from threadline.db import cases, get_engine, queries, session_scope
from threadline.db.models import Appointment, Availability, Customer, Order
from threadline.db.seed import seed

pytestmark = [pytest.mark.services, pytest.mark.usefixtures("business_db")]


def counts():
    with session_scope() as s:
        return tuple(s.scalar(select(func.count()).select_from(m)) for m in (Customer, Order, Availability))


def bookable(days_ahead: int, hour: int) -> dt.datetime:
    day = dt.date.today() + dt.timedelta(days=days_ahead)
    while day.weekday() == 6:
        day += dt.timedelta(days=1)
    return dt.datetime.combine(day, dt.time(hour))


def test_seeding_twice_changes_nothing():
    before = counts()
    seed(get_engine())
    seed(get_engine())
    assert counts() == before
    assert before[0] >= 3 and before[1] >= 6 and before[2] > 500


def test_every_delivery_state_is_in_the_demo_data():
    states = {queries.get_order(n).status for n in ("482913", "102938", "554433", "661204", "318273")}
    assert states == {"shipped", "delivered", "processing", "out_for_delivery", "cancelled"}
    assert queries.get_order("000000") is None


def test_only_one_of_two_simultaneous_bookings_wins():
    when = bookable(12, 16)
    results, barrier = [], threading.Barrier(4)

    def book(who):
        barrier.wait()
        try:
            results.append(queries.book_appointment(who, "consultation", when, None).ref)
        except queries.SlotUnavailable:
            results.append(None)

    threads = [threading.Thread(target=book, args=(f"c_race_{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r is not None for r in results) == 1
    with session_scope() as s:
        booked = s.scalar(select(func.count(Appointment.id)).where(Appointment.starts_at == when,
                                                                 Appointment.service_type == "consultation"))
    assert booked == 1


def test_times_outside_availability_cannot_be_booked():
    with pytest.raises(queries.SlotUnavailable):
        queries.book_appointment("c_x", "repair", bookable(3, 20), None)
    assert queries.upcoming_appointments("c_x") == []


def test_cancelled_slot_becomes_free_again():
    when = bookable(13, 9)
    booked = queries.book_appointment("c_y", "installation", when, None)
    assert not queries.is_available("installation", when)
    queries.cancel_appointment("c_y", booked.ref)
    assert queries.is_available("installation", when)
    with pytest.raises(LookupError):
        queries.cancel_appointment("c_y", booked.ref)


def test_handoff_and_feedback_are_stored():
    case = cases.record_handoff("c_z", "customer_request", {"task": "checking order 482913"})
    assert cases.handoff_requests("c_z")[-1]["id"] == case
    queries.record_feedback("c_z", True, None, "troubleshooting:power")
    assert queries.feedback_for("c_z") == [{"helpful": True, "comment": None, "topic": "troubleshooting:power"}]
