"""Erasure leaves no trace of the customer's phone, email and name in any store; export gathers it all."""
import json

import pytest

from threadline import consent, erasure, identity, outbound_failures, pii
from threadline.db import audit, consent as ledger, queries
from threadline.db.models import Customer
from threadline.db.session import session_scope

PHONE = "+14155550177"
WA_ID = "14155550177"
NAME = "Zed Quillfeather"
EMAIL = "zed.quill@example.net"

pytestmark = pytest.mark.usefixtures("key_prefix")


def _everything(redis_conn) -> bytes:
    from threadline.keys import Keys

    dump = b""
    for key in redis_conn.scan_iter(match=Keys().prefix + ":*", count=1000):
        kind = redis_conn.type(key)
        if kind == b"string":
            dump += redis_conn.get(key) or b""
        elif kind == b"list":
            dump += b"".join(redis_conn.lrange(key, 0, -1))
        elif kind == b"hash":
            dump += json.dumps({k.decode(): v.decode() for k, v in redis_conn.hgetall(key).items()}).encode()
        elif kind in (b"set", b"zset"):
            dump += b"".join(redis_conn.smembers(key) if kind == b"set" else redis_conn.zrange(key, 0, -1))
        dump += key
    return dump


def _database() -> str:
    with session_scope() as session:
        rows = []
        for table in ("customers", "orders", "appointments", "handoff_cases", "feedback", "consent_events",
                      "suppressed_sends", "audit_log", "erased_identifiers", "journey_instances", "journey_steps",
                      "journey_sends"):
            rows += [str(tuple(r)) for r in session.execute(__import__("sqlalchemy").text(f"select * from {table}"))]
        return "\n".join(rows)


def test_erasure_leaves_no_trace_of_phone_email_and_name(redis_conn, business_db):
    from threadline import linking
    from threadline.db.models import Order
    from threadline.keys import Keys

    with session_scope() as session:
        session.query(Customer).filter(Customer.email == EMAIL).delete()
        session.add(Customer(name=NAME, email=EMAIL, phone=PHONE))
        session.flush()
        owner = session.query(Customer).filter(Customer.email == EMAIL).one().id
        session.merge(Order(number="900177", customer_id=owner, status="shipped",
                            shipping_address="12 Quill Lane, Springfield", postal_code="55555"))
    who = identity.resolve("whatsapp", WA_ID, phone=PHONE, verified_phone=True, redis=redis_conn)
    customer = who.customer_id
    redis_conn.set(linking.owner_key("whatsapp", WA_ID), str(owner))
    masked = pii.mask(f"book me, {EMAIL}, or call {PHONE}", customer, redis=redis_conn)
    events = [{"event": "user", "text": masked.text, "metadata": {"profile_name": NAME}, "timestamp": 1.0}]
    redis_conn.rpush(Keys().tracker("ev", customer), *[json.dumps(e) for e in events])
    redis_conn.rpush(Keys().tracker("ss", customer), 0)
    queries.book_appointment(customer, "repair", _free_slot(), EMAIL)
    consent.revoke_channel(customer, "whatsapp", consent.SOURCE_KEYWORD, "STOP", redis_conn)
    outbound_failures.record("whatsapp", customer, {"text": "hi Zed"}, "HTTP 500", redis=redis_conn)
    from threadline.journeys import service as journeys

    journeys.start("service_reminder", customer, {"vehicle": "Zed's Quill roadster"}, redis=redis_conn)
    before = _database() + _everything(redis_conn).decode("utf-8", "replace")
    assert NAME in before and EMAIL in before and WA_ID in _database().replace("+", "")

    removed = erasure.erase(customer, actor="test", redis=redis_conn)

    assert removed["business_customer"] == 1 and removed["vault_values"] == 2 and removed["failed_sends"] == 1
    assert removed["journeys"] == 1
    stores = _everything(redis_conn).decode("utf-8", "replace") + _database()
    for trace in ("Zed", "Quill", EMAIL, WA_ID, "415 555 0177", customer):
        assert trace not in stores, trace
    assert identity.channel_identity("whatsapp", WA_ID, redis_conn) is None
    assert erasure.is_erased("phone", WA_ID) and erasure.is_erased("email", EMAIL)
    assert erasure.is_erased("customer", customer)
    pseudonym = erasure.pseudonym(customer)
    (row,) = audit.entries(customer_ref=pseudonym, action="erasure")
    assert row["actor"] == "test"
    assert [h["state"] for h in ledger.history(pseudonym)] == ["revoked", "revoked"]  # the opt-out is still proven


def test_export_gathers_the_customers_data(redis_conn, business_db):
    customer = identity.resolve("telegram", "5150", redis=redis_conn).customer_id
    pii.mask("mail me at sam@example.org", customer, redis=redis_conn)
    consent.grant_channel(customer, "telegram", consent.SOURCE_OPERATOR, redis=redis_conn)
    data = erasure.export(customer, actor="test", redis=redis_conn)
    assert data["customer_id"] == customer
    assert [v["value"] for v in data["tokenized_values"].values()] == ["sam@example.org"]
    assert data["consent"][0]["state"] == "granted"
    assert json.dumps(data, default=str)
    assert audit.entries(customer_ref=customer, action="export")


def test_a_confirmed_erasure_is_carried_out_instead_of_the_save(redis_conn, business_db, domain):
    import asyncio

    from rasa.shared.core.events import UserUttered
    from rasa.shared.core.trackers import DialogueStateTracker

    from threadline.tracker_store import RedisEventLogTrackerStore

    store = RedisEventLogTrackerStore(domain, redis=redis_conn)
    tracker = DialogueStateTracker("c_erase_me", domain.slots)
    tracker.update(UserUttered("hello"))
    asyncio.run(store.save(tracker))
    assert asyncio.run(store.retrieve("c_erase_me")) is not None
    erasure.request("c_erase_me", redis=redis_conn)
    tracker.update(UserUttered("yes"))
    asyncio.run(store.save(tracker))
    assert asyncio.run(store.retrieve("c_erase_me")) is None
    assert erasure.pending("c_erase_me", redis_conn) is None


def _free_slot():
    import datetime as dt

    from threadline.db.models import Availability

    with session_scope() as session:
        slot = session.query(Availability).filter(Availability.starts_at > dt.datetime.now() + dt.timedelta(days=1),
                                                  Availability.service_type == "repair").first()
        return slot.starts_at
