"""The identity index and link codes on a real Redis."""
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from rasa.shared.core.constants import ACTION_LISTEN_NAME, ACTION_SESSION_START_NAME
from rasa.shared.core.events import ActionExecuted, SessionStarted, SlotSet, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker

from threadline import identity, linking
from threadline.tracker_store import RedisEventLogTrackerStore

pytestmark = pytest.mark.services

SECRET = "test-web-secret"


def signed(ref, expires=None, secret=SECRET):
    """What a website's backend hands the widget: (ref, signature, expires)."""
    expires = expires or int(time.time()) + 3600
    return {"signed_customer_id": ref, "signature": identity.sign_web_identity(ref, secret, expires),
            "signature_expires": expires}


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

    assert first.is_new and first.trust == "low" and first.origin == "created"
    assert first.customer_id.startswith("c_") and len(first.customer_id) == 22
    assert again == identity.Identity(first.customer_id, "low", False)
    assert other.customer_id != first.customer_id
    assert identity.address_for(first.customer_id, "telegram", redis=r) == "1001"


def test_whatsapp_then_voice_with_same_number_is_one_customer_but_the_call_proves_nothing(r):
    wa = identity.resolve("whatsapp", "14155552671", phone="14155552671", verified_phone=True, redis=r)
    voice = identity.resolve("twilio_voice", "+1 415-555-2671", phone="+1 415-555-2671", redis=r)
    jambonz = identity.resolve("jambonz", "(415) 555 2671", phone="(415) 555 2671", redis=r)

    assert wa.trust == "verified" and wa.is_new
    assert voice.customer_id == jambonz.customer_id == wa.customer_id
    assert voice.trust == jambonz.trust == "low"  # caller id can be spoofed
    assert voice.origin == jambonz.origin == "caller_id"  # continuity, no personal data
    assert not voice.is_new
    # the WhatsApp identity keeps its own trust
    assert identity.resolve("whatsapp", "14155552671", phone="14155552671", verified_phone=True, redis=r).trust == "verified"


def test_a_caller_id_never_creates_or_claims_the_phone(r):
    # A spoofed call from a number nobody has yet...
    spoofed = identity.resolve("twilio_voice", "+447911123456", phone="+447911123456", redis=r)
    assert spoofed.is_new and spoofed.trust == "low"
    # ...does not make the real owner's WhatsApp land in the caller's customer.
    owner = identity.resolve("whatsapp", "447911123456", phone="447911123456", verified_phone=True, redis=r)
    assert owner.customer_id != spoofed.customer_id and owner.is_new and owner.origin == "created"
    # From now on a call from that number follows the verified owner, with continuity only.
    later = identity.resolve("twilio_voice", "+447911123456", phone="+447911123456", redis=r)
    assert later.customer_id == owner.customer_id and later.origin == "caller_id" and later.trust == "low"
    assert identity.address_for(spoofed.customer_id, "twilio_voice", redis=r) is None


def test_keys_carry_no_personal_data(r, key_prefix):
    identity.resolve("whatsapp", "14155552671", phone="14155552671", verified_phone=True, redis=r)
    identity.resolve("telegram", "987654321", redis=r)
    identity.resolve("webchat", "sess-1", **signed("crm-customer-77"), redis=r)

    keys = " ".join(_all_keys(r, key_prefix))
    for secret_bit in ("4155552671", "987654321", "crm-customer-77", "sess-1"):
        assert secret_bit not in keys


def test_signed_and_unsigned_web_identity(r):
    ref = "shop-user-5"
    good = signed(ref)
    assert identity.verify_web_identity(ref, good["signature"], SECRET, good["signature_expires"])
    assert not identity.verify_web_identity(ref, good["signature"], "other-secret", good["signature_expires"])
    assert not identity.verify_web_identity(ref, "00" * 32, SECRET, good["signature_expires"])
    assert not identity.verify_web_identity(ref, "é" * 64, SECRET, good["signature_expires"])  # never raises

    first = identity.resolve("webchat", "visitor-a", **good, redis=r)
    same_ref_elsewhere = identity.resolve("webchat", "visitor-b", **good, redis=r)
    forged = identity.resolve("webchat", "visitor-c", **{**good, "signature": "deadbeef"}, redis=r)
    unsigned = identity.resolve("webchat", "visitor-d", redis=r)

    assert first.trust == "verified" and first.is_new
    assert same_ref_elsewhere.customer_id == first.customer_id and same_ref_elsewhere.trust == "verified"
    assert forged.trust == "anonymous" and forged.customer_id != first.customer_id
    assert unsigned.trust == "anonymous" and unsigned.is_new
    assert unsigned.customer_id not in (first.customer_id, forged.customer_id)


def test_signatures_expire_and_are_bound_to_their_expiry(r):
    ref = "shop-user-9"
    past = signed(ref, expires=int(time.time()) - 5)
    assert identity.resolve("webchat", "visitor-exp", **past, redis=r).trust == "anonymous"
    tampered = signed(ref)
    tampered["signature_expires"] += 86400 * 365  # a later expiry than the website signed
    assert identity.resolve("webchat", "visitor-exp2", **tampered, redis=r).trust == "anonymous"
    far = signed(ref, expires=int(time.time()) + 86400 * 30)  # longer than WEBCHAT_IDENTITY_MAX_AGE
    assert identity.resolve("webchat", "visitor-exp3", **far, redis=r).trust == "anonymous"
    no_expiry = {"signed_customer_id": ref, "signature": identity.sign_web_identity(ref, SECRET)}
    assert identity.resolve("webchat", "visitor-exp4", **no_expiry, redis=r).trust == "anonymous"


def test_an_unsigned_message_ends_verified_trust(r):
    first = identity.resolve("webchat", "visitor-u", **signed("shop-user-10"), redis=r)
    later = identity.resolve("webchat", "visitor-u", redis=r)
    assert (first.trust, later.trust) == ("verified", "anonymous")
    assert later.customer_id == first.customer_id


def test_anonymous_visitor_who_signs_in_gets_verified(r):
    anonymous = identity.resolve("webchat", "visitor-e", redis=r)
    ref = "shop-user-6"
    signed_in = identity.resolve("webchat", "visitor-e", **signed(ref), redis=r)
    assert signed_in.customer_id == anonymous.customer_id and signed_in.trust == "verified"
    # the ref now leads to that customer from another visitor session too
    other = identity.resolve("webchat", "visitor-f", **signed(ref), redis=r)
    assert other.customer_id == anonymous.customer_id


def test_a_new_ref_in_a_verified_browser_is_a_new_customer_never_a_join(r):
    x = identity.resolve("webchat", "visitor-x", **signed("shop-user-x"), redis=r)
    y = identity.resolve("webchat", "visitor-x", **signed("shop-user-y"), redis=r)
    assert y.customer_id != x.customer_id and y.is_new and y.trust == "verified"
    # Y's ref leads to Y's customer, X's ref still to X's: nothing was bound across.
    assert identity.resolve("webchat", "visitor-z", **signed("shop-user-x"), redis=r).customer_id == x.customer_id
    assert identity.resolve("webchat", "visitor-w", **signed("shop-user-y"), redis=r).customer_id == y.customer_id


def test_web_signature_ignored_without_configured_secret(r, monkeypatch):
    monkeypatch.delenv("WEBCHAT_IDENTITY_SECRET")
    result = identity.resolve("webchat", "visitor-g", **signed("shop-user-7", secret=""), redis=r)
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


# ------------------------------------------------------------------ link codes


def test_link_code_from_an_unverified_channel_works_once(r):
    tg = identity.resolve("telegram", "3010", redis=r)
    code = linking.issue_link_code(tg.customer_id, channel="telegram", channel_user_id="3010", redis=r)
    assert len(code) == 6 and code.isdigit()

    result = linking.redeem_link_code(code, "webchat", "visitor-h", redis=r)
    assert (result.ok, result.customer_id, result.merged_from, result.reason) == (True, tg.customer_id, None, None)
    assert identity.channel_identity("webchat", "visitor-h", redis=r) == identity.Identity(
        tg.customer_id, "low", False, "link")
    assert identity.address_for(tg.customer_id, "webchat", redis=r) == "visitor-h"

    reused = linking.redeem_link_code(code, "telegram", "3001", redis=r)
    assert (reused.ok, reused.reason) == (False, "invalid_or_expired")


def test_joining_a_verified_customer_waits_for_its_confirmation(r):
    wa = identity.resolve("whatsapp", "14155550101", phone="14155550101", verified_phone=True, redis=r)
    code = linking.issue_link_code(wa.customer_id, channel="whatsapp", channel_user_id="14155550101", redis=r)

    result = linking.redeem_link_code(code, "webchat", "visitor-p", redis=r)
    assert (result.ok, result.reason) == (False, "pending_confirmation")
    pending = result.pending
    assert (pending.confirm_channel, pending.confirm_user, pending.into) == ("whatsapp", "14155550101", wa.customer_id)
    assert identity.channel_identity("webchat", "visitor-p", redis=r) is None  # nothing linked yet

    # Only the verified identity that was asked can answer, and only once.
    assert linking.take_pending(pending.id, "webchat", "visitor-p", redis=r) is None
    taken = linking.take_pending(pending.id, "whatsapp", "14155550101", redis=r)
    assert taken == pending
    assert linking.take_pending(pending.id, "whatsapp", "14155550101", redis=r) is None
    linking.complete(taken, redis=r)
    assert identity.channel_identity("webchat", "visitor-p", redis=r) == identity.Identity(
        wa.customer_id, "verified", False, "link")


def test_a_verified_redeemer_links_at_once(r):
    tg = identity.resolve("telegram", "3020", redis=r)
    code = linking.issue_link_code(tg.customer_id, redis=r, channel="telegram", channel_user_id="3020")
    wa = identity.resolve("whatsapp", "14155550102", phone="14155550102", verified_phone=True, redis=r)
    result = linking.redeem_link_code(code, "whatsapp", "14155550102", redis=r)
    assert result.ok and result.merged_from == wa.customer_id
    assert identity.resolve("whatsapp", "14155550102", phone="14155550102", verified_phone=True,
                            redis=r).customer_id == tg.customer_id


def test_a_code_issued_to_a_caller_id_passes_on_no_personal_data(r):
    wa = identity.resolve("whatsapp", "14155550103", phone="14155550103", verified_phone=True, redis=r)
    caller = identity.resolve("twilio_voice", "+14155550103", phone="+14155550103", redis=r)
    assert caller.origin == "caller_id"
    code = linking.issue_link_code(wa.customer_id, channel="twilio_voice", channel_user_id="+14155550103", redis=r)
    result = linking.redeem_link_code(code, "telegram", "3030", redis=r)
    # The customer has a verified WhatsApp: it is asked, and even then the link carries caller_id.
    assert result.reason == "pending_confirmation" and result.pending.origin == "caller_id"


def test_expired_link_code_refused(r):
    customer = identity.resolve("telegram", "3002", redis=r).customer_id
    code = linking.issue_link_code(customer, redis=r)
    r.pexpire(linking._code_key(code), 1)  # as if its 10 minutes were over
    time.sleep(0.01)
    result = linking.redeem_link_code(code, "whatsapp", "14155550102", redis=r)
    assert (result.ok, result.reason) == (False, "invalid_or_expired")


def test_link_code_lives_ten_minutes(r):
    customer = identity.resolve("telegram", "3003", redis=r).customer_id
    code = linking.issue_link_code(customer, redis=r)
    assert 590 < r.ttl(linking._code_key(code)) <= linking.LINK_CODE_TTL == 600


def test_same_customer_redeeming_own_code(r):
    customer = identity.resolve("telegram", "3004", redis=r).customer_id
    code = linking.issue_link_code(customer, redis=r)
    result = linking.redeem_link_code(code, "telegram", "3004", redis=r)
    assert (result.ok, result.customer_id, result.reason) == (False, customer, "same_customer")


def test_rate_limited_after_five_failures_per_sender(r):
    customer = identity.resolve("telegram", "3005", redis=r).customer_id
    code = linking.issue_link_code(customer, redis=r)
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(5):
        assert linking.redeem_link_code(wrong, "webchat", "attacker", redis=r, source="10.0.0.1").reason == \
            "invalid_or_expired"

    blocked = linking.redeem_link_code(code, "webchat", "attacker", redis=r, source="10.0.0.2")
    assert (blocked.ok, blocked.reason) == (False, "rate_limited")
    # the correct code was not burnt and still works for someone not blocked
    assert linking.redeem_link_code(code, "webchat", "visitor-k", redis=r, source="10.0.0.3").ok


def test_fresh_visitor_ids_from_one_address_are_throttled_too(r):
    customer = identity.resolve("telegram", "3007", redis=r).customer_id
    code = linking.issue_link_code(customer, redis=r)
    wrong = "000000" if code != "000000" else "111111"
    for attempt in range(5):
        linking.redeem_link_code(wrong, "webchat", f"fresh-visitor-{attempt}", redis=r, source="203.0.113.9")
    blocked = linking.redeem_link_code(code, "webchat", "fresh-visitor-99", redis=r, source="203.0.113.9")
    assert blocked.reason == "rate_limited"


def test_a_global_budget_stops_guessing_from_any_number_of_addresses(r, monkeypatch):
    monkeypatch.setenv("LINK_GLOBAL_FAIL_LIMIT", "20")
    customer = identity.resolve("telegram", "3008", redis=r).customer_id
    code = linking.issue_link_code(customer, redis=r)
    wrong = "000000" if code != "000000" else "111111"
    for attempt in range(20):  # 20 addresses, 20 visitor ids, one guess each
        linking.redeem_link_code(wrong, "webchat", f"v-{attempt}", redis=r, source=f"198.51.100.{attempt}")
    blocked = linking.redeem_link_code(code, "webchat", "v-last", redis=r, source="198.51.100.200")
    assert blocked.reason == "rate_limited"
    assert r.exists(linking._code_key(code))  # not consumed


def test_link_codes_are_unique_among_live_codes(r, monkeypatch):
    customer = identity.resolve("telegram", "3006", redis=r).customer_id
    draws = iter([123456, 123456, 654321])
    monkeypatch.setattr(linking.secrets, "randbelow", lambda _: next(draws))
    assert linking.issue_link_code(customer, redis=r) == "123456"
    assert linking.issue_link_code(customer, redis=r) == "654321"


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
    web = identity.resolve("webchat", "visitor-m", redis=r)
    tg = identity.resolve("telegram", "4001", redis=r)
    voice = identity.resolve("twilio_voice", "+14155550104", phone="+14155550104", redis=r)
    # voice and telegram are one customer (linked earlier), the web visitor another
    assert identity.link("twilio_voice", "+14155550104", tg.customer_id, "low", redis=r) == voice.customer_id
    web_events = _conversation(100, ["web 1", "web 2"])
    tg_events = _conversation(50, ["tg 1"]) + [UserUttered("tg 2", timestamp=101.5)]
    await store.save(DialogueStateTracker.from_events(web.customer_id, web_events))
    await store.save(DialogueStateTracker.from_events(tg.customer_id, tg_events))
    identity.record_channel_use(web.customer_id, "webchat", redis=r)

    code = linking.issue_link_code(web.customer_id, redis=r)
    result = linking.redeem_link_code(code, "telegram", "4001", redis=r, tracker_store=store)

    assert (result.ok, result.customer_id, result.merged_from) == (True, web.customer_id, tg.customer_id)
    events = list((await store.retrieve_full_tracker(web.customer_id)).events)
    texts = [e.text for e in events if isinstance(e, UserUttered)]
    assert texts == ["tg 1", "web 1", "tg 2", "web 2"]
    assert SlotSet("identity_merged_from", tg.customer_id) in [
        SlotSet(e.key, e.value) for e in events if isinstance(e, SlotSet)
    ]
    assert await store.retrieve(tg.customer_id) is None

    # every index entry of the merged customer now leads to the surviving one
    assert identity.resolve("telegram", "4001", redis=r).customer_id == web.customer_id
    moved_voice = identity.resolve("twilio_voice", "+14155550104", phone="+14155550104", redis=r)
    assert moved_voice.customer_id == web.customer_id and moved_voice.trust == "low"
    assert identity.addresses(web.customer_id, redis=r) == {
        "webchat": "visitor-m",
        "telegram": "4001",
        "twilio_voice": "+14155550104",
    }
    assert identity.addresses(tg.customer_id, redis=r) == {}
    assert identity.last_channel(web.customer_id, redis=r) == "webchat"


def test_link_rejects_unknown_trust(r):
    with pytest.raises(ValueError):
        identity.link("telegram", "5001", "c_x", "super", redis=r)
