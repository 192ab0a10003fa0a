"""Journeys below the rasa server: definitions, rules, the store and the worker's decisions.

The worker runs against the real business database (SQLite, or PostgreSQL
with ``DATABASE_URL``) and Redis; only the last hop, the ``Deliverer`` that
the rasa server provides, is a recorder here (``tests/e2e/test_journeys.py``
runs the real one through the real webhooks and the platform stand-in).
"""
import asyncio
import datetime as dt
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from threadline.journeys import definitions, rules, service, store
from threadline.journeys.worker import JourneyWorker, SendOutcome

pytestmark = pytest.mark.services
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "journeys"
ROOT = Path(__file__).resolve().parent.parent.parent


class RecordingDeliverer:
    """The last hop, recorded: which step went to which channel.

    The business database is shared by the whole test session, so a worker
    may also run other tests' leftover steps: ``sent`` keeps only those of
    the customers given (``for_``).
    """

    def __init__(self, *for_, reachable=("whatsapp", "telegram", "twilio_voice"), phone="+14155550123"):
        self.customers = set(for_)
        self.channels = set(reachable)
        self.phone = phone
        self.all = []
        self.answers = []  # SendOutcomes to give, in order, before "sent"

    @property
    def sent(self):
        return [s for s in self.all if s[0] in self.customers]

    def _answer(self, claim, default):
        if claim.customer_ref in self.customers and self.answers:
            return self.answers.pop(0)
        return default

    def reachable(self, customer_ref, channel):
        return channel in self.channels

    def phone_of(self, customer_ref):
        return self.phone

    async def send_message(self, claim, journey, step, channel):
        self.all.append((claim.customer_ref, claim.instance_id, step.name, channel))
        return self._answer(claim, SendOutcome("sent"))

    async def place_call(self, claim, journey, step, channel, number):
        self.all.append((claim.customer_ref, claim.instance_id, step.name, f"call:{channel}:{number}"))
        return self._answer(claim, SendOutcome("sent", provider_ref="CA123"))


@pytest.fixture
def journeys_env(monkeypatch, business_db, key_prefix):
    monkeypatch.setenv("JOURNEYS_DIR", str(FIXTURES))
    monkeypatch.setenv("JOURNEY_WAIT_SCALE", "0")
    monkeypatch.setenv("JOURNEY_QUIET_HOURS", "off")
    monkeypatch.setenv("JOURNEY_FREQUENCY_CAP", "off")
    monkeypatch.setenv("JOURNEY_LEASE_SECONDS", "5")
    service.forget_definitions()
    yield
    service.forget_definitions()


def customer():
    return "c_" + uuid.uuid4().hex[:16]


def run(worker, passes=6):
    async def go():
        done = 0
        for _ in range(passes):
            done += await worker.run_once()
        return done

    return asyncio.run(go())


# ------------------------------------------------------------------ definitions


def test_the_projects_journeys_are_valid_against_the_domain():
    found = definitions.load_all(ROOT / "journeys")
    assert {"service_reminder", "case_follow_up"} <= set(found)
    reminder = found["service_reminder"]
    assert [s.name for s in reminder.steps] == ["reminder", "nudge", "call"]
    assert reminder.steps[1].wait == dt.timedelta(hours=48) and reminder.steps[2].is_call
    assert reminder.event == "service_due" and reminder.required == ("vehicle",)


def test_a_wrong_journey_file_gets_every_problem_named(tmp_path):
    (tmp_path / "broken.yml").write_text(textwrap.dedent("""
        journey: Broken Name
        trigger: {event: moon_landing}
        purpose: spam
        steps:
          - name: one
            wait: two days
            channels: [fax]
            response: utter_no_such_thing
          - name: one
            wait: 1h
            channels: [whatsapp]
            call: [twilio_voice]
            response: hello
            unless: [raining]
            colour: blue
    """))
    (tmp_path / "not_yaml.yml").write_text("journey: [unclosed")
    with pytest.raises(definitions.JourneyError) as caught:
        definitions.load_all(tmp_path, domain=definitions.load_domain())
    text = str(caught.value)
    for expected in ("journey must be a lower_snake_case name", "unknown trigger event 'moon_landing'",
                     "purpose must be one of", "'two days' is not a duration", "channel 'fax' cannot carry",
                     "utter_no_such_thing is not in domain.yml", "give either channels", "must name a domain response",
                     "unknown condition 'raining'", "unknown key 'colour'", "step name 'one' is used twice",
                     "not_yaml.yml: not valid YAML"):
        assert expected in text, (expected, text)


def test_make_validate_checks_the_journeys():
    result = subprocess.run([sys.executable, "-m", "threadline.journeys", "validate"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "service_reminder" in result.stdout


# ------------------------------------------------------------------------ rules


def utc(*args):
    return dt.datetime(*args)


def test_quiet_hours_are_the_customers_own_across_time_zones():
    quiet = definitions.parse_quiet_hours("21:00-08:00")
    at = utc(2026, 6, 10, 20, 30)  # 22:30 in Berlin, 16:30 in New York, 05:30 next day in Tokyo
    assert rules.next_allowed(at, ZoneInfo("Europe/Berlin"), quiet) == utc(2026, 6, 11, 6, 0)  # 08:00 CEST
    assert rules.next_allowed(at, ZoneInfo("America/New_York"), quiet) == at
    assert rules.next_allowed(at, ZoneInfo("Asia/Tokyo"), quiet) == utc(2026, 6, 10, 23, 0)  # 08:00 JST
    assert rules.next_allowed(at, ZoneInfo("Europe/Berlin"), None) == at


def test_quiet_hours_end_at_local_eight_across_daylight_saving_changes():
    quiet = definitions.parse_quiet_hours("21:00-08:00")
    new_york = ZoneInfo("America/New_York")
    # Saturday 23:30 EST, the night clocks spring forward: 08:00 EDT is 12:00 UTC, not 13:00.
    assert rules.next_allowed(utc(2026, 3, 8, 4, 30), new_york, quiet) == utc(2026, 3, 8, 12, 0)
    # The night they fall back: 08:00 EST is 13:00 UTC.
    assert rules.next_allowed(utc(2026, 11, 1, 3, 0), new_york, quiet) == utc(2026, 11, 1, 13, 0)
    # Quiet hours inside one day (13:00-14:00) too.
    assert rules.next_allowed(utc(2026, 1, 5, 12, 30), ZoneInfo("Europe/London"),
                              definitions.parse_quiet_hours("12:00-14:00")) == utc(2026, 1, 5, 14, 0)


def test_the_time_zone_comes_from_context_then_phone_then_default(monkeypatch):
    monkeypatch.setenv("JOURNEY_DEFAULT_TIMEZONE", "Europe/Lisbon")
    assert rules.zone_of_phone("+4930901820").key == "Europe/Berlin"
    assert rules.zone_of_phone("+81312345678").key == "Asia/Tokyo"
    assert rules.zone_of_phone("+12125550100").key == "America/New_York"
    assert rules.customer_zone("Asia/Kolkata", "+4930901820").key == "Asia/Kolkata"
    assert rules.customer_zone(None, "+4930901820").key == "Europe/Berlin"
    assert rules.customer_zone(None, None).key == "Europe/Lisbon"
    assert rules.customer_zone("Not/AZone", "not a phone").key == "Europe/Lisbon"


def test_settings_that_make_no_sense_are_refused(monkeypatch):
    monkeypatch.setenv("JOURNEY_FREQUENCY_CAP", "lots")
    with pytest.raises(Exception, match="JOURNEY_FREQUENCY_CAP must look like 3/24h"):
        rules.frequency_cap()
    monkeypatch.setenv("JOURNEY_FREQUENCY_CAP", "3/24h")
    assert rules.frequency_cap() == (3, dt.timedelta(hours=24))
    with pytest.raises(ValueError, match="quiet hours"):
        definitions.parse_quiet_hours("9pm-8am")


# ----------------------------------------------------------------------- worker


def test_a_journey_runs_its_steps_on_their_channels_then_completes(journeys_env, redis_conn):
    who = customer()
    instance = service.start("three_steps", who, {"vehicle": "Golf"}, redis=redis_conn)
    deliverer = RecordingDeliverer(who)
    assert run(JourneyWorker(deliverer, redis=redis_conn)) == 3
    assert deliverer.sent == [(who, instance, "first", "whatsapp"), (who, instance, "second", "telegram"),
                              (who, instance, "third", "call:twilio_voice:+14155550123")]
    (listed,) = store.list_instances(customer_ref=who)
    assert listed["status"] == "completed"
    assert [(s["name"], s["outcome"], s["send"]["state"]) for s in listed["steps"]] == [
        ("first", "sent", "sent"), ("second", "sent", "sent"), ("third", "sent", "sent")]


def test_missing_context_and_unknown_journeys_are_refused(journeys_env, redis_conn):
    with pytest.raises(service.JourneyRefused, match="needs vehicle"):
        service.start("three_steps", customer(), {}, redis=redis_conn)
    with pytest.raises(service.JourneyRefused, match="there is no journey 'nope'"):
        service.start("nope", customer(), {}, redis=redis_conn)
    with pytest.raises(service.JourneyRefused, match="not an IANA time zone"):
        service.start("three_steps", customer(), {"vehicle": "Golf", "timezone": "Mars/Olympus"}, redis=redis_conn)


def test_an_event_starts_its_journeys_once_per_occurrence(journeys_env, redis_conn):
    who = customer()
    assert len(service.emit("service_due", who, {"vehicle": "Golf"}, occurrence="svc-1", redis=redis_conn)) == 1
    assert service.emit("service_due", who, {"vehicle": "Golf"}, occurrence="svc-1", redis=redis_conn) == []
    assert len(store.list_instances(customer_ref=who)) == 1


def test_a_reply_on_any_channel_ends_the_wait(journeys_env, redis_conn, monkeypatch):
    monkeypatch.setenv("JOURNEY_WAIT_SCALE", "1")
    who = customer()
    instance = service.start("three_steps", who, {"vehicle": "Golf"}, redis=redis_conn)
    deliverer = RecordingDeliverer(who)
    worker = JourneyWorker(deliverer, redis=redis_conn)
    run(worker)
    assert [s[2] for s in deliverer.sent] == ["first"]  # the second waits an hour
    assert service.customer_wrote(who, redis_conn) == [instance]
    (listed,) = store.list_instances(customer_ref=who)
    assert listed["status"] == "replied"
    assert listed["steps"][1]["state"] == "cancelled"
    assert service.customer_wrote(who, redis_conn) == []  # nothing waits any more: one EXISTS
    assert not redis_conn.exists(f"{os.environ['THREADLINE_KEY_PREFIX']}:journeys:waiting:{who}")


def test_an_opt_out_between_steps_ends_the_journey(journeys_env, redis_conn):
    from threadline import consent

    who = customer()
    service.start("keeps_going", who, {}, redis=redis_conn)
    deliverer = RecordingDeliverer(who)
    worker = JourneyWorker(deliverer, redis=redis_conn)
    claims = store.claim_due(worker.name, 1, dt.timedelta(seconds=30))
    asyncio.run(worker.process(claims[0]))
    consent.revoke_channel(who, "whatsapp", consent.SOURCE_KEYWORD, "STOP", redis=redis_conn)
    run(worker)
    assert [s[2] for s in deliverer.sent] == ["one"]
    (listed,) = store.list_instances(customer_ref=who)
    assert listed["status"] == "cancelled" and listed["ended_reason"].startswith("opted_out")


def test_consent_decides_the_channel(journeys_env, redis_conn):
    from threadline import consent

    who = customer()
    consent.revoke_channel(who, "whatsapp", consent.SOURCE_KEYWORD, "STOP", redis=redis_conn)
    deliverer = RecordingDeliverer(who)
    # Revoked before the journey started (the ledger keeps whole seconds; an opt-out in the
    # journey's first second counts as during it, the safe side): the next channel of the list.
    asyncio.run(asyncio.sleep(1.1))
    service.start("three_steps", who, {"vehicle": "Golf"}, redis=redis_conn)
    run(JourneyWorker(deliverer, redis=redis_conn), passes=1)
    assert deliverer.sent[0][3] == "telegram"


def test_quiet_hours_move_the_step_instead_of_dropping_it(journeys_env, redis_conn, monkeypatch):
    now = dt.datetime.utcnow()
    start, end = (now - dt.timedelta(hours=1)).strftime("%H:00"), (now + dt.timedelta(hours=2)).strftime("%H:00")
    monkeypatch.setenv("JOURNEY_QUIET_HOURS", f"{start}-{end}")
    who = customer()
    service.start("three_steps", who, {"vehicle": "Golf", "timezone": "UTC"}, redis=redis_conn)
    deliverer = RecordingDeliverer(who)
    run(JourneyWorker(deliverer, redis=redis_conn), passes=2)
    assert deliverer.sent == []
    (listed,) = store.list_instances(customer_ref=who)
    step = listed["steps"][0]
    assert step["state"] == "pending" and "quiet hours in UTC" in step["detail"]
    assert step["due_at"].startswith((now + dt.timedelta(hours=2)).strftime("%Y-%m-%dT%H:00"))


def test_the_frequency_cap_spans_journeys_and_channels(journeys_env, redis_conn, monkeypatch):
    monkeypatch.setenv("JOURNEY_FREQUENCY_CAP", "2/24h")
    who = customer()
    service.start("keeps_going", who, {}, redis=redis_conn)
    service.start("three_steps", who, {"vehicle": "Golf"}, redis=redis_conn)
    deliverer = RecordingDeliverer(who)
    run(JourneyWorker(deliverer, redis=redis_conn))
    assert len(deliverer.sent) == 2
    waiting = [s for i in store.list_instances(customer_ref=who) for s in i["steps"] if s["state"] == "pending"]
    assert waiting and all("frequency cap" in s["detail"] for s in waiting)


def test_a_throttled_send_waits_as_the_platform_asks_and_keeps_one_log_row(journeys_env, redis_conn):
    who = customer()
    instance = service.start("keeps_going", who, {}, redis=redis_conn)
    deliverer = RecordingDeliverer(who)
    deliverer.answers = [SendOutcome("failed", "HTTP 429: slow down", 429, retry_after=0.5)]
    worker = JourneyWorker(deliverer, redis=redis_conn)
    run(worker, passes=1)
    (listed,) = store.list_instances(customer_ref=who)
    assert listed["steps"][0]["state"] == "pending" and "retry at" in listed["steps"][0]["detail"]
    assert listed["steps"][0]["send"]["state"] == "failed"
    asyncio.run(asyncio.sleep(0.6))
    run(worker)
    assert [s[2] for s in deliverer.sent] == ["one", "one", "two"]
    from sqlalchemy import func, select

    from threadline.db.models import JourneySend
    from threadline.db.session import session_scope

    with session_scope() as session:
        rows = session.execute(select(JourneySend.step_index, JourneySend.state).where(
            JourneySend.instance_id == instance).order_by(JourneySend.step_index)).all()
        assert [tuple(r) for r in rows] == [(0, "sent"), (1, "sent")]
        assert session.scalar(select(func.count()).select_from(JourneySend).where(
            JourneySend.instance_id == instance)) == 2


def test_two_workers_never_send_one_step_twice(journeys_env, redis_conn):
    who = [customer() for _ in range(40)]
    for c in who:
        service.start("keeps_going", c, {}, redis=redis_conn)
    deliverer = RecordingDeliverer(*who)

    async def both():
        first, second = JourneyWorker(deliverer, redis=redis_conn), JourneyWorker(deliverer, redis=redis_conn)
        for _ in range(10):
            await asyncio.gather(first.run_once(), second.run_once())

    asyncio.run(both())
    assert len(deliverer.sent) == 80
    assert len(set(deliverer.sent)) == 80


_DIES = textwrap.dedent("""
    import datetime as dt, os, signal, sys
    from threadline.journeys import store
    claims = store.claim_due("doomed-worker", 1, dt.timedelta(seconds=1))
    assert claims, "nothing to claim"
    if sys.argv[1] == "after-log":
        c = claims[0]
        store.begin_send(c.instance_id, c.step_index, c.customer_ref, "whatsapp", "doomed-worker")
    print(claims[0].step_id, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
""")


def _claim_and_die(when):
    result = subprocess.run([sys.executable, "-c", _DIES, when], cwd=ROOT, capture_output=True, text=True,
                            timeout=120, env=dict(os.environ))
    assert result.returncode == -signal.SIGKILL, result.stderr
    return int(result.stdout.strip())


def test_a_worker_killed_between_claim_and_send_loses_nothing(journeys_env, redis_conn):
    who = customer()
    service.start("keeps_going", who, {}, redis=redis_conn)
    _claim_and_die("after-claim")
    deliverer = RecordingDeliverer(who)
    worker = JourneyWorker(deliverer, redis=redis_conn)
    run(worker, passes=1)
    assert deliverer.sent == []  # the dead worker's lease still holds
    asyncio.run(asyncio.sleep(1.2))
    worker._last_recover = -1e9
    run(worker)
    assert [s[2] for s in deliverer.sent] == ["one", "two"]


def test_a_worker_killed_while_sending_never_sends_that_step_again(journeys_env, redis_conn):
    who = customer()
    service.start("keeps_going", who, {}, redis=redis_conn)
    _claim_and_die("after-log")
    deliverer = RecordingDeliverer(who)
    worker = JourneyWorker(deliverer, redis=redis_conn)
    asyncio.run(asyncio.sleep(1.2))
    worker._last_recover = -1e9
    run(worker)
    # The first step is in doubt (the provider may have it): not re-sent; the journey moves on.
    assert [s[2] for s in deliverer.sent] == ["two"]
    (listed,) = store.list_instances(customer_ref=who)
    assert [(s["outcome"], s["send"]["state"]) for s in listed["steps"]] == [("in_doubt", "in_doubt"), ("sent", "sent")]


def test_a_journey_can_turn_quiet_hours_off_or_set_its_own(tmp_path):
    base = {"journey": "j", "steps": [{"name": "a", "wait": "0s", "channels": ["whatsapp"],
                                       "response": "utter_journey_case_follow_up"}]}
    assert definitions.parse({**base, "quiet_hours": False}, "j.yml")[0].quiet_hours == ()
    assert definitions.parse({**base, "quiet_hours": "off"}, "j.yml")[0].quiet_hours == ()
    assert definitions.parse({**base, "quiet_hours": "22:00-07:00"}, "j.yml")[0].quiet_hours == (
        dt.time(22), dt.time(7))
    assert definitions.parse(base, "j.yml")[0].quiet_hours is None  # JOURNEY_QUIET_HOURS applies
    assert "quiet hours" in definitions.parse({**base, "quiet_hours": "late"}, "j.yml")[1][0]


def test_failed_sends_give_up_after_three_and_the_journey_moves_on(journeys_env, redis_conn):
    who = customer()
    service.start("keeps_going", who, {}, redis=redis_conn)
    deliverer = RecordingDeliverer(who)
    deliverer.answers = [SendOutcome("failed", "HTTP 500", 500)] * 3
    worker = JourneyWorker(deliverer, redis=redis_conn)
    for _ in range(3):
        run(worker, passes=1)
        from sqlalchemy import update

        from threadline.db.models import JourneyStep
        from threadline.db.session import session_scope

        with session_scope() as session:  # the retry waits a minute: bring it forward
            session.execute(update(JourneyStep).where(JourneyStep.customer_ref == who, JourneyStep.state == "pending")
                            .values(due_at=dt.datetime.utcnow()))
    run(worker)
    (listed,) = store.list_instances(customer_ref=who)
    assert [(s["name"], s["outcome"]) for s in listed["steps"]] == [("one", "failed"), ("two", "sent")]
    assert [s[2] for s in deliverer.sent] == ["one", "one", "one", "two"]
