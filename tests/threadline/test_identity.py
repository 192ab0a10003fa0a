"""The identity index on a real Redis."""
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from rasa.shared.core.constants import ACTION_LISTEN_NAME, ACTION_SESSION_START_NAME
from rasa.shared.core.events import ActionExecuted, SessionStarted, SlotSet, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker

from threadline import identity
from threadline.tracker_store import RedisEventLogTrackerStore

pytestmark = pytest.mark.services

SECRET = "test-web-secret"


@pytest.fixture
def r(redis_conn, key_prefix, monkeypatch):
    monkeypatch.setenv("WEBCHAT_IDENTITY_SECRET", SECRET)
    return redis_conn


@pytest.fixture
def store(domain, redis_conn, key_prefix):
    return RedisEventLogTrackerStore(domain, redis=redis_conn, key_prefix=key_prefix)


def _all_keys(r, key_prefix):
    return [key.decode() for key in r.scan_iter(match=key_prefix + "*")]


def test_normalise_phone():
    assert identity.normalise_phone("+1 (415) 555-2671") == "+14155552671"
    assert identity.normalise_phone("(415) 555-2671") == "+14155552671"
    assert identity.normalise_phone("14155552671") == "+14155552671"
    assert identity.normalise_phone("447911123456") == "+447911123456"
    assert identity.normalise_phone("07911 123456", "GB") == "+447911123456"
    assert identity.normalise_phone("12") is None
    assert identity.normalise_phone("anonymous") is None


def test_first_contact_creates_customer_then_finds_it(r):
    first = identity.resolve("telegram", "1001", redis=r)
    again = identity.resolve("telegram", "1001", redis=r)
    other = identity.resolve("telegram", "1002", redis=r)

    assert first.is_new and first.trust == "low"
    assert first.customer_id.startswith("c_") and len(first.customer_id) == 22
    assert again == identity.Identity(first.customer_id, "low", False)
    assert other.customer_id != first.customer_id
    assert identity.address_for(first.customer_id, "telegram", redis=r) == "1001"


def test_whatsapp_and_voice_with_same_number_are_one_customer(r):
    wa = identity.resolve("whatsapp", "14155552671", phone="14155552671", verified_phone=True, redis=r)
    voice = identity.resolve("twilio_voice", "+1 415-555-2671", phone="+1 415-555-2671", redis=r)
    jambonz = identity.resolve("jambonz", "(415) 555 2671", phone="(415) 555 2671", redis=r)

    assert wa.trust == "verified" and wa.is_new
    assert voice.customer_id == jambonz.customer_id == wa.customer_id
    assert voice.trust == jambonz.trust == "low"  # caller id can be spoofed
    assert not voice.is_new
    # the WhatsApp identity keeps its own trust
    assert identity.resolve("whatsapp", "14155552671", phone="14155552671", verified_phone=True, redis=r).trust == "verified"
    assert identity.addresses(wa.customer_id, redis=r) == {
        "whatsapp": "14155552671",
        "twilio_voice": "+1 415-555-2671",
        "jambonz": "(415) 555 2671",
    }


def test_voice_first_then_whatsapp(r):
    voice = identity.resolve("twilio_voice", "+447911123456", phone="+447911123456", redis=r)
    wa = identity.resolve("whatsapp", "447911123456", phone="447911123456", verified_phone=True, redis=r)
    assert (voice.trust, wa.trust) == ("low", "verified")
    assert voice.customer_id == wa.customer_id


def test_keys_carry_no_personal_data(r, key_prefix):
    identity.resolve("whatsapp", "14155552671", phone="14155552671", verified_phone=True, redis=r)
    identity.resolve("telegram", "987654321", redis=r)
    ref = "crm-customer-77"
    identity.resolve("webchat", "sess-1", signed_customer_id=ref, signature=identity.sign_web_identity(ref, SECRET), redis=r)

    keys = " ".join(_all_keys(r, key_prefix))
    for secret_bit in ("4155552671", "987654321", "crm-customer-77", "sess-1"):
        assert secret_bit not in keys


def test_signed_and_unsigned_web_identity(r):
    ref = "shop-user-5"
    signature = identity.sign_web_identity(ref, SECRET)
    assert identity.verify_web_identity(ref, signature, SECRET)
    assert not identity.verify_web_identity(ref, signature, "other-secret")
    assert not identity.verify_web_identity(ref, "00" * 32, SECRET)

    signed = identity.resolve("webchat", "visitor-a", signed_customer_id=ref, signature=signature, redis=r)
    same_ref_elsewhere = identity.resolve("webchat", "visitor-b", signed_customer_id=ref, signature=signature, redis=r)
    forged = identity.resolve("webchat", "visitor-c", signed_customer_id=ref, signature="deadbeef", redis=r)
    unsigned = identity.resolve("webchat", "visitor-d", redis=r)

    assert signed.trust == "verified" and signed.is_new
    assert same_ref_elsewhere.customer_id == signed.customer_id and same_ref_elsewhere.trust == "verified"
    assert forged.trust == "anonymous" and forged.customer_id != signed.customer_id
    assert unsigned.trust == "anonymous" and unsigned.is_new
    assert unsigned.customer_id not in (signed.customer_id, forged.customer_id)


def test_anonymous_visitor_who_signs_in_gets_verified(r):
    anonymous = identity.resolve("webchat", "visitor-e", redis=r)
    ref = "shop-user-6"
    signed = identity.resolve(
        "webchat", "visitor-e", signed_customer_id=ref, signature=identity.sign_web_identity(ref, SECRET), redis=r
    )
    assert signed.customer_id == anonymous.customer_id and signed.trust == "verified"
    # the ref now leads to that customer from another visitor session too
    other = identity.resolve(
        "webchat", "visitor-f", signed_customer_id=ref, signature=identity.sign_web_identity(ref, SECRET), redis=r
    )
    assert other.customer_id == anonymous.customer_id


def test_web_signature_ignored_without_configured_secret(r, monkeypatch):
    monkeypatch.delenv("WEBCHAT_IDENTITY_SECRET")
    ref = "shop-user-7"
    result = identity.resolve(
        "webchat", "visitor-g", signed_customer_id=ref, signature=identity.sign_web_identity(ref, ""), redis=r
    )
    assert result.trust == "anonymous"


def test_concurrent_first_messages_make_one_customer(redis_url, key_prefix):
    def first_message(_):
        client = redis.Redis.from_url(redis_url)
        try:
            return identity.resolve(
                "whatsapp", "4915112345678", phone="4915112345678", verified_phone=True, redis=client
            )
        finally:
            client.close()

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(first_message, range(64)))

    assert len({result.customer_id for result in results}) == 1
    assert sum(result.is_new for result in results) == 1


def test_last_channel_and_switch_detection(r):
    customer = identity.resolve("telegram", "2001", redis=r).customer_id
    assert identity.last_channel(customer, redis=r) is None
    assert identity.record_channel_use(customer, "telegram", redis=r) is None
    assert identity.record_channel_use(customer, "telegram", redis=r) == "telegram"
    assert identity.record_channel_use(customer, "whatsapp", redis=r) == "telegram"
    assert identity.last_channel(customer, redis=r) == "whatsapp"


def test_link_code_works_once(r):
    wa = identity.resolve("whatsapp", "14155550100", phone="14155550100", verified_phone=True, redis=r)
    identity.record_channel_use(wa.customer_id, "whatsapp", redis=r)
    code = identity.issue_link_code(wa.customer_id, redis=r)
    assert len(code) == 6 and code.isdigit()

    result = identity.redeem_link_code(code, "webchat", "visitor-h", redis=r)
    assert result == identity.LinkResult(ok=True, customer_id=wa.customer_id, merged_from=None, reason=None)
    # the web visitor proved it reads that (verified) WhatsApp
    assert identity.resolve("webchat", "visitor-h", redis=r) == identity.Identity(wa.customer_id, "verified", False)
    assert identity.address_for(wa.customer_id, "webchat", redis=r) == "visitor-h"

    reused = identity.redeem_link_code(code, "telegram", "3001", redis=r)
    assert (reused.ok, reused.reason) == (False, "invalid_or_expired")


def test_link_code_trust_is_max_of_owner_and_redeemer(r):
    voice = identity.resolve("twilio_voice", "+14155550101", phone="+14155550101", redis=r)
    code = identity.issue_link_code(voice.customer_id, redis=r, trust="low")
    assert identity.redeem_link_code(code, "webchat", "visitor-i", redis=r).ok
    assert identity.resolve("webchat", "visitor-i", redis=r).trust == "low"

    ref = "shop-user-8"
    verified = identity.resolve(
        "webchat", "visitor-j", signed_customer_id=ref, signature=identity.sign_web_identity(ref, SECRET), redis=r
    )
    code = identity.issue_link_code(voice.customer_id, redis=r, trust="low")
    assert identity.redeem_link_code(code, "webchat", "visitor-j", redis=r).merged_from == verified.customer_id
    assert identity.resolve("webchat", "visitor-j", redis=r) == identity.Identity(voice.customer_id, "verified", False)


def test_expired_link_code_refused(r):
    customer = identity.resolve("telegram", "3002", redis=r).customer_id
    code = identity.issue_link_code(customer, redis=r)
    r.pexpire(identity._code_key(code), 1)  # as if its 10 minutes were over
    time.sleep(0.01)
    result = identity.redeem_link_code(code, "whatsapp", "14155550102", redis=r)
    assert (result.ok, result.reason) == (False, "invalid_or_expired")


def test_link_code_lives_ten_minutes(r):
    customer = identity.resolve("telegram", "3003", redis=r).customer_id
    code = identity.issue_link_code(customer, redis=r)
    assert 590 < r.ttl(identity._code_key(code)) <= identity.LINK_CODE_TTL == 600


def test_same_customer_redeeming_own_code(r):
    customer = identity.resolve("telegram", "3004", redis=r).customer_id
    code = identity.issue_link_code(customer, redis=r)
    result = identity.redeem_link_code(code, "telegram", "3004", redis=r)
    assert (result.ok, result.customer_id, result.reason) == (False, customer, "same_customer")


def test_rate_limited_after_five_failures(r):
    customer = identity.resolve("telegram", "3005", redis=r).customer_id
    code = identity.issue_link_code(customer, redis=r)
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(identity.LINK_FAIL_LIMIT):
        assert identity.redeem_link_code(wrong, "webchat", "attacker", redis=r).reason == "invalid_or_expired"

    blocked = identity.redeem_link_code(code, "webchat", "attacker", redis=r)
    assert (blocked.ok, blocked.reason) == (False, "rate_limited")
    # the correct code was not burnt and still works for someone not blocked
    assert identity.redeem_link_code(code, "webchat", "visitor-k", redis=r).ok
    assert 0 < r.ttl(identity._fail_key("webchat", "attacker")) <= identity.LINK_FAIL_WINDOW


def test_link_codes_are_unique_among_live_codes(r, monkeypatch):
    customer = identity.resolve("telegram", "3006", redis=r).customer_id
    draws = iter([123456, 123456, 654321])
    monkeypatch.setattr(identity.secrets, "randbelow", lambda _: next(draws))
    assert identity.issue_link_code(customer, redis=r) == "123456"
    assert identity.issue_link_code(customer, redis=r) == "654321"


def _conversation(start, texts):
    events = [
        ActionExecuted(ACTION_SESSION_START_NAME, timestamp=start),
        SessionStarted(timestamp=start + 0.1),
        ActionExecuted(ACTION_LISTEN_NAME, timestamp=start + 0.2),
    ]
    events += [UserUttered(text, timestamp=start + 1 + i) for i, text in enumerate(texts)]
    return events


@pytest.mark.asyncio
async def test_merge_two_customers_with_conversations(r, store):
    wa = identity.resolve("whatsapp", "14155550103", phone="14155550103", verified_phone=True, redis=r)
    tg = identity.resolve("telegram", "4001", redis=r)
    voice = identity.resolve("twilio_voice", "+14155550104", phone="+14155550104", redis=r)
    # voice and telegram are one customer (linked earlier), WhatsApp another
    assert identity.link("twilio_voice", "+14155550104", tg.customer_id, "low", redis=r) == voice.customer_id
    wa_events = _conversation(100, ["wa 1", "wa 2"])
    tg_events = _conversation(50, ["tg 1"]) + [UserUttered("tg 2", timestamp=101.5)]
    await store.save(DialogueStateTracker.from_events(wa.customer_id, wa_events))
    await store.save(DialogueStateTracker.from_events(tg.customer_id, tg_events))
    identity.record_channel_use(wa.customer_id, "whatsapp", redis=r)

    code = identity.issue_link_code(wa.customer_id, redis=r)
    result = identity.redeem_link_code(code, "telegram", "4001", redis=r, tracker_store=store)

    assert (result.ok, result.customer_id, result.merged_from) == (True, wa.customer_id, tg.customer_id)
    events = list((await store.retrieve_full_tracker(wa.customer_id)).events)
    timestamps = [event.timestamp for event in events]
    assert timestamps == sorted(timestamps)
    assert [e.text for e in events if isinstance(e, UserUttered)] == ["tg 1", "wa 1", "tg 2", "wa 2"]
    assert len(events) == len(wa_events) + len(tg_events) + 1
    assert events[-1] == SlotSet("identity_merged_from", tg.customer_id, timestamp=events[-1].timestamp)
    assert await store.retrieve(tg.customer_id) is None

    # every index entry of the merged customer now leads to the surviving one
    assert identity.resolve("telegram", "4001", redis=r).customer_id == wa.customer_id
    moved_voice = identity.resolve("twilio_voice", "+14155550104", phone="+14155550104", redis=r)
    assert moved_voice == identity.Identity(wa.customer_id, "low", False)
    assert identity.resolve("jambonz", "+14155550104", phone="+14155550104", redis=r).customer_id == wa.customer_id
    assert identity.addresses(wa.customer_id, redis=r) == {
        "whatsapp": "14155550103",
        "telegram": "4001",
        "twilio_voice": "+14155550104",
        "jambonz": "+14155550104",
    }
    assert identity.addresses(tg.customer_id, redis=r) == {}
    assert identity.last_channel(wa.customer_id, redis=r) == "whatsapp"


def test_link_rejects_unknown_trust(r):
    with pytest.raises(ValueError):
        identity.link("telegram", "5001", "c_x", "super", redis=r)
