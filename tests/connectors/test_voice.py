"""Shared voice rendering, call state, barge-in inference and speculative prefetch."""
import asyncio
import json

import pytest

from connectors import voice
from tests.connectors.test_voice_checks import assert_valid_ssml
from threadline import identity, prefetch

# ------------------------------------------------------------------ speech text


@pytest.mark.parametrize(
    "markdown, spoken",
    [
        ("Order 482913 is **on its way**.", "Order 482913 is on its way."),
        ("Great news 🎉🙂 it's _done_ ✅", "Great news it's done."),
        ("# Heading\n* first\n* second", "Heading. first. second."),
        ("Use `reset` then ~~wait~~ go", "Use reset then wait go."),
        ("Open 9:00-18:00, Monday to Saturday", "Open 9:00 to 18:00, Monday to Saturday."),
        ("👍", ""),
    ],
)
def test_markdown_and_emoji_never_reach_the_speech(markdown, spoken):
    assert voice.speech_text(markdown)[0] == spoken


def test_links_are_taken_out_of_the_speech():
    text, links = voice.speech_text("Track it [here](https://t.example/1Z?x=1&y=2) or at https://t.example/p.")
    assert text == "Track it here or at."
    assert links == ["https://t.example/1Z?x=1&y=2", "https://t.example/p"]
    text, links = voice.speech_text("[https://t.example/a](https://t.example/a)")
    assert text == "" and links == ["https://t.example/a"]


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("Order 482913 is on its way", 'Order <say-as interpret-as="digits">482913</say-as> is on its way'),
        ("Tracking 1Z999AA10123456784.", 'Tracking <say-as interpret-as="characters">1Z999AA10123456784</say-as>.'),
        ("Call +1 555 0100 today", 'Call <say-as interpret-as="telephone">+1 555 0100</say-as> today'),
        ("In 2024, 14 days, 10:30, 1.50 and 123456.78", "In 2024, 14 days, 10:30, 1.50 and 123456.78"),
        ("Postal code 94105", 'Postal code <say-as interpret-as="digits">94105</say-as>'),
        ("Tom & Jerry <3", "Tom &amp; Jerry &lt;3"),
    ],
)
def test_numbers_and_codes_get_say_as(text, fragment):
    assert voice.ssml_fragment(text) == fragment
    assert_valid_ssml(voice.speak(fragment))


def test_preview_reads_digits_one_by_one():
    fragment, _ = voice.message_ssml("Order 482913 is **on its way**.")
    assert voice.spoken_preview(fragment) == "Order 4 8 2 9 1 3 is on its way."


def test_paragraphs_are_separated_by_a_pause():
    fragment, _ = voice.message_ssml("First part.\n\nSecond part.")
    assert fragment == 'First part.<break time="400ms"/>Second part.'


def test_speaking_time_counts_words_and_breaks():
    assert voice.estimated_seconds("one two three") == pytest.approx(3 / voice.WORDS_PER_SECOND)
    assert voice.estimated_seconds('one<break time="500ms"/>two') == pytest.approx(2 / voice.WORDS_PER_SECOND + 0.5)
    spelled = voice.estimated_seconds('<say-as interpret-as="digits">482913</say-as>')
    assert spelled == pytest.approx(6 / voice.WORDS_PER_SECOND)


# ---------------------------------------------------------------------- choices


BUTTONS = [
    {"title": "Track an order", "payload": "/check_order"},
    {"title": "Book an **appointment** 📅", "payload": "/book_appointment"},
    {"title": "Talk to a person", "payload": "/request_human"},
]


def test_buttons_become_spoken_choices_with_keypad_digits():
    choices = voice.make_choices(BUTTONS)
    assert [(c.key, c.payload) for c in choices] == [("1", "/check_order"), ("2", "/book_appointment"),
                                                    ("0", "/request_human")]
    spoken = voice.spoken_preview(voice.choices_ssml(choices))
    assert spoken == ("For Track an order, press 1 or say track an order. "
                      "For Book an appointment, press 2 or say book an appointment. "
                      "For Talk to a person, press 0 or say talk to a person.")


def test_more_than_nine_choices_are_only_speakable_after_the_ninth():
    choices = voice.make_choices([{"title": f"Option {i}", "payload": f"/o{i}"} for i in range(1, 12)])
    assert [c.key for c in choices] == [str(i) for i in range(1, 10)] + ["", ""]
    assert voice.spoken_preview(voice.choices_ssml(choices[-1:])) == "Or say option 11."


def test_a_prompt_keys_choices_across_messages_and_collects_links():
    prompt = voice.build_prompt([
        {"text": "Pick one", "buttons": BUTTONS[:1]},
        {"text": "Or", "quick_replies": BUTTONS[1:2]},
        {"image": "https://img.example/a.png"},
        {"text": "Bye", "utter_action": "utter_goodbye"},
    ])
    assert [c.key for c in prompt.choices] == ["1", "2"]
    assert prompt.images == ["https://img.example/a.png"] and prompt.hangup
    assert prompt.hints == ["track an order", "book an appointment"]
    assert_valid_ssml(prompt.ssml)
    assert voice.sent_elsewhere_ssml(prompt, "WhatsApp") == "I've sent the picture to your WhatsApp."


def test_custom_payloads_are_spoken_only_with_text():
    prompt = voice.build_prompt([{"custom": {"text": "From a custom payload"}}, {"custom": {"kind": "card"}}])
    assert voice.spoken_preview(prompt.fragment) == "From a custom payload."


# ---------------------------------------------------------------------- barge-in


@pytest.mark.parametrize(
    "received_after, speech, digits, expected",
    [
        (1.0, "where is my order", None, True),     # answered while a 10 s prompt was playing
        (14.0, "where is my order", None, False),   # after the prompt, a short utterance
        (11.0, "where is my order", None, True),    # 4 words + 1 s wait: began at ~8.5 s
        (9.0, None, "1", True),
        (12.0, None, "482913", False),
        (1.0, None, None, False),
    ],
)
def test_barge_in_is_inferred_from_timing(received_after, speech, digits, expected):
    started = voice.started_during_prompt(100.0, 10.0, 100.0 + received_after, speech=speech, digits=digits)
    assert started is expected


def test_no_barge_in_without_a_known_prompt():
    assert not voice.started_during_prompt(0.0, 10.0, 5.0, speech="hi")
    assert not voice.started_during_prompt(100.0, 0.2, 100.1, speech="hi")


# -------------------------------------------------------------------- caller ids


@pytest.mark.parametrize(
    "caller, expected",
    [
        ("+14155552671", ("+14155552671", "+14155552671")),
        ("14155552671", ("+14155552671", "+14155552671")),
        ("sip:+14155552671@pbx.example", ("+14155552671", "+14155552671")),
        ("client:alice", ("client:alice", None)),
        ("anonymous", ("call:CA1", None)),
        ("+266696687", ("call:CA1", None)),
        (None, ("call:CA1", None)),
    ],
)
def test_caller_ids_become_e164_or_a_per_call_identity(caller, expected):
    assert voice.caller_identity(caller, "CA1") == expected


# ------------------------------------------------------------- state and events


@pytest.mark.services
def test_call_state_round_trips(redis):
    state = voice.CallState("twilio_voice", "CA9", customer_id="c_1", turn=3, prompt_at=12.5, prompt_seconds=4.2,
                            parts=["Hi"], choices=[{"key": "1", "title": "A", "payload": "/a"}])
    state.save(redis)
    loaded = voice.CallState.load(redis, "twilio_voice", "CA9")
    assert loaded.known and (loaded.customer_id, loaded.turn, loaded.parts) == ("c_1", 3, ["Hi"])
    assert loaded.choices == state.choices and loaded.prompt_seconds == pytest.approx(4.2)
    assert 0 < redis.ttl(voice.CallState.key("twilio_voice", "CA9")) <= voice.CALL_TTL
    assert not voice.CallState.load(redis, "twilio_voice", "CA-unknown").known


@pytest.mark.services
def test_choices_map_digits_and_titles_to_payloads(redis):
    voice.store_choices(redis, "jambonz", "c1", voice.make_choices(BUTTONS[:2]))
    assert voice.chosen_payload(redis, "jambonz", "c1", "1", None) == "/check_order"
    assert voice.chosen_payload(redis, "jambonz", "c1", "2#", None) == "/book_appointment"
    assert voice.chosen_payload(redis, "jambonz", "c1", "0", None) == "/request_human"
    assert voice.chosen_payload(redis, "jambonz", "c1", "7", None) is None
    assert voice.chosen_payload(redis, "jambonz", "c1", "482913", None) is None
    assert voice.chosen_payload(redis, "jambonz", "c1", None, "Book an appointment.") == "/book_appointment"
    assert voice.chosen_payload(redis, "jambonz", "c1", None, "track my order please") is None
    assert 0 < redis.ttl(voice.choices_key("jambonz", "c1")) <= voice.CHOICES_TTL


@pytest.mark.services
def test_events_go_to_one_stream(redis, key_prefix):
    voice.record_event(redis, voice.BARGE_IN, channel="twilio_voice", call_id="CA1", customer_id="c_1", turn=2)
    voice.record_event(redis, voice.NO_INPUT, channel="jambonz", call_id="j1", customer_id=None, count=1)
    assert voice.events_key() == f"{key_prefix}:voice:events"
    events = voice.read_events(redis)
    assert [(e["kind"], e["call_id"], e["customer_id"]) for e in events] == [
        ("barge_in", "CA1", "c_1"), ("no_input", "j1", "")]
    assert events[0]["details"] == {"turn": 2} and float(events[0]["time"]) > 0
    assert [e["kind"] for e in voice.read_events(redis, "j1")] == ["no_input"]


# --------------------------------------------------------------------- prefetch


@pytest.mark.services
async def test_prefetch_writes_everything_in_one_set(redis, monkeypatch):
    writes = []
    original = redis.set
    monkeypatch.setattr(redis, "set", lambda *a, **k: writes.append(a[0]) or original(*a, **k))

    async def slow_conversation():
        await asyncio.sleep(0.05)
        return {"active_loop": "order_status_form"}

    found = await prefetch.prefetch(
        "c_42", {"profile": lambda: {"channels": ["whatsapp"]}, "conversation": slow_conversation}, redis=redis
    )
    assert writes == [prefetch.cache_key("c_42")]
    assert found == {"profile": {"channels": ["whatsapp"]}, "conversation": {"active_loop": "order_status_form"}}
    assert prefetch.get_cached("c_42", "conversation", redis) == {"active_loop": "order_status_form"}
    assert prefetch.get_cached("c_42", "open_cases", redis) is None
    assert 0 < redis.ttl(prefetch.cache_key("c_42")) <= prefetch.DEFAULT_TTL


@pytest.mark.services
async def test_a_failing_lookup_is_left_out(redis):
    def broken():
        raise RuntimeError("database down")

    await prefetch.prefetch("c_43", {"profile": lambda: {"channels": []}, "open_cases": broken}, redis=redis)
    assert prefetch.get_cached("c_43", "profile", redis) == {"channels": []}
    assert prefetch.get_cached("c_43", "open_cases", redis) is None


@pytest.mark.services
async def test_a_cancelled_or_late_prefetch_writes_nothing(redis):
    started = asyncio.Event()

    async def never_done():
        started.set()
        await asyncio.sleep(30)

    prefetcher = prefetch.Prefetcher()
    task = prefetcher.start("call-1", "c_44", {"profile": lambda: {"x": 1}, "conversation": never_done}, redis=redis)
    await started.wait()
    assert prefetcher.running("call-1")
    assert prefetcher.cancel("call-1")
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not prefetcher.running("call-1") and not prefetcher.cancel("call-1")
    with pytest.raises(asyncio.TimeoutError):
        await prefetch.prefetch("c_44", {"conversation": never_done}, timeout=0.05, redis=redis)
    assert redis.get(prefetch.cache_key("c_44")) is None


@pytest.mark.services
async def test_default_loaders_read_identity_and_cases(redis, business_db):
    from threadline.db import cases

    who = identity.resolve("whatsapp", "14155550123", phone="14155550123", verified_phone=True, redis=redis)
    identity.record_channel_use(who.customer_id, "whatsapp", redis=redis)
    case = cases.record_handoff(who.customer_id, "customer_request", {})
    found = await prefetch.prefetch(who.customer_id, prefetch.default_loaders(who.customer_id, redis=redis),
                                    redis=redis)
    assert found["profile"] == {"channels": ["whatsapp"], "last_channel": "whatsapp"}
    assert [c["id"] for c in found["open_cases"]] == [case]
    assert json.loads(redis.get(prefetch.cache_key(who.customer_id)))["kinds"]["profile"]["channels"] == ["whatsapp"]


# ----------------------------------------------------------------- credentials.yml


def test_the_projects_credentials_build_both_voice_channels(tmp_path, monkeypatch):
    import yaml
    from rasa.core.run import create_http_input_channels

    from connectors.jambonz import JambonzInput
    from connectors.twilio_voice import TwilioVoiceInput
    from threadline import settings

    blocks = {key: value for key, value in yaml.safe_load((settings.PROJECT_ROOT / "credentials.yml").read_text()).items()
              if key.startswith(("connectors.twilio_voice.", "connectors.jambonz."))}
    path = tmp_path / "credentials.yml"
    path.write_text(yaml.safe_dump(blocks))
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "tw-token")
    monkeypatch.setenv("JAMBONZ_WEBHOOK_SECRET", "jz-secret")
    monkeypatch.setenv("TWILIO_PUBLIC_BASE_URL", "https://voice.example.com")
    channels = {type(channel): channel for channel in create_http_input_channels(None, str(path))}
    twilio, jambonz = channels[TwilioVoiceInput], channels[JambonzInput]
    assert twilio.config["auth_token"] == "tw-token" and twilio.config["public_base_url"] == "https://voice.example.com"
    assert jambonz.config["webhook_secret"] == "jz-secret" and jambonz.config["basic_auth_user"] == ""
    assert twilio.get_output_channel().name() == "twilio_voice" and jambonz.get_output_channel().name() == "jambonz"
