"""Idempotent demo data: a few customers and orders, and bookable slots.

Safe to run from several processes at once: every insert is
``ON CONFLICT DO NOTHING`` on a natural key.
"""
import datetime as dt
from typing import Iterable, List, Dict, Any

from sqlalchemy import Table
from sqlalchemy.engine import Engine

from threadline.db.models import Availability, Customer, Order

SERVICES = ("repair", "installation", "consultation")
OPEN_HOURS = range(9, 18)  # appointments start on the hour, 9:00 to 17:00
OPEN_DAYS = range(0, 6)  # Monday to Saturday
HORIZON_DAYS = 60

DEMO_CUSTOMERS = [
    {"id": 1, "name": "Jane Doe", "email": "jane.doe@example.com", "phone": "+14155550100",
     "external_ref": "shop-1001"},
    {"id": 2, "name": "Omar Haddad", "email": "omar@example.com", "phone": "+447400123456",
     "external_ref": "shop-1002"},
    {"id": 3, "name": "Mei Lin", "email": "mei.lin@example.com", "phone": "+12125550143",
     "external_ref": "shop-1003"},
]


def demo_orders(today: dt.date) -> List[Dict[str, Any]]:
    """Orders in every delivery state, dated relative to ``today``."""
    day = dt.timedelta(days=1)
    return [
        {"number": "482913", "customer_id": 1, "status": "shipped", "carrier": "UPS",
         "tracking_number": "1Z999AA10123456784", "expected_delivery": today + 2 * day,
         "shipping_address": "221 Mission Street, San Francisco, CA", "postal_code": "94105"},
        {"number": "102938", "customer_id": 1, "status": "delivered", "carrier": "FedEx",
         "tracking_number": "449044304137821", "expected_delivery": today - 3 * day,
         "shipping_address": "221 Mission Street, San Francisco, CA", "postal_code": "94105"},
        {"number": "554433", "customer_id": 2, "status": "processing", "carrier": None,
         "tracking_number": None, "expected_delivery": today + 5 * day,
         "shipping_address": "10 Downing Street, London", "postal_code": "SW1A 2AA"},
        {"number": "661204", "customer_id": 2, "status": "out_for_delivery", "carrier": "DHL",
         "tracking_number": "JD014600006281230", "expected_delivery": today,
         "shipping_address": "10 Downing Street, London", "postal_code": "SW1A 2AA"},
        {"number": "318273", "customer_id": 3, "status": "cancelled", "carrier": None,
         "tracking_number": None, "expected_delivery": None,
         "shipping_address": "500 Fifth Avenue, New York, NY", "postal_code": "10110"},
        {"number": "777001", "customer_id": 3, "status": "shipped", "carrier": "USPS",
         "tracking_number": "9400100000000000000000", "expected_delivery": today + 1 * day,
         "shipping_address": "500 Fifth Avenue, New York, NY", "postal_code": "10110"},
    ]


def slot_times(start: dt.date, days: int) -> Iterable[dt.datetime]:
    """Every bookable start time in ``days`` days from ``start``."""
    for offset in range(days):
        day = start + dt.timedelta(days=offset)
        if day.weekday() in OPEN_DAYS:
            for hour in OPEN_HOURS:
                yield dt.datetime.combine(day, dt.time(hour))


def _insert_ignore(engine: Engine, table: Table, rows: List[Dict[str, Any]]) -> None:
    if not rows:
        return
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    with engine.begin() as conn:
        conn.execute(insert(table).on_conflict_do_nothing(), rows)


def seed(engine: Engine, today: dt.date = None) -> None:
    """Insert whatever demo data is missing; never changes existing rows."""
    today = today or dt.date.today()
    _insert_ignore(engine, Customer.__table__, DEMO_CUSTOMERS)
    _insert_ignore(engine, Order.__table__, demo_orders(today))
    _insert_ignore(
        engine,
        Availability.__table__,
        [
            {"service_type": service, "starts_at": when, "capacity": 1}
            for when in slot_times(today, HORIZON_DAYS)
            for service in SERVICES
        ],
    )
    if engine.dialect.name == "postgresql":
        # Explicit ids above leave the sequence behind.
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "SELECT setval(pg_get_serial_sequence('customers', 'id'), "
                "(SELECT MAX(id) FROM customers))"
            )
