"""Structural checks for what the voice channels produce, and tests of the checks themselves.

``assert_valid_twiml`` parses a TwiML document and checks it against TwiML's
structure as far as Threadline uses it: ``<Response>`` at the root; ``<Say>``
only inside ``<Response>`` or ``<Gather>``; ``<Gather>`` attributes known to
Twilio and with valid values; ``<Hangup/>`` last and empty; every ``<Say>`` a
well-formed SSML fragment with nothing a speech engine should not read
(Markdown, emoji). ``assert_valid_ssml`` and ``assert_valid_jambonz`` do the
same for SSML documents and jambonz verb arrays. Other voice tests import them.
"""
import json
import re
import xml.etree.ElementTree as ET
from typing import Any, Dict, List, Union

import pytest

SSML_TAGS = {"speak", "break", "say-as", "prosody", "emphasis", "p", "s", "sub", "lang", "w", "phoneme"}
SAY_AS = {"characters", "spell-out", "cardinal", "number", "ordinal", "digits", "fraction", "unit", "date",
          "time", "address", "expletive", "telephone"}
GATHER_ATTRIBUTES = {"action", "method", "input", "timeout", "speechTimeout", "finishOnKey", "numDigits",
                     "language", "hints", "bargeIn", "actionOnEmptyResult", "profanityFilter", "speechModel",
                     "enhanced", "partialResultCallback", "partialResultCallbackMethod", "maxSpeechTime", "debug"}
SAY_ATTRIBUTES = {"voice", "language", "loop"}
RESPONSE_CHILDREN = {"Say", "Gather", "Hangup", "Pause", "Play", "Redirect", "Dial"}
GATHER_CHILDREN = {"Say", "Play", "Pause"}
JAMBONZ_VERBS = {"gather", "say", "hangup", "pause", "play", "redirect", "dial"}
_EMOJI = re.compile("[\U0001F000-\U0001FAFF\u2600-\u27BF\uFE0F]")
_MARKDOWN = re.compile(r"\*\*|__|~~|`|\]\(|^#", re.MULTILINE)


def _check_ssml_element(element: ET.Element) -> None:
    tag = element.tag
    assert tag in SSML_TAGS, f"unexpected SSML element <{tag}>"
    if tag == "say-as":
        assert element.get("interpret-as") in SAY_AS, f"bad interpret-as {element.get('interpret-as')!r}"
        assert (element.text or "").strip(), "empty say-as"
        assert len(element) == 0, "say-as must contain text only"
    if tag == "break":
        assert element.get("time") or element.get("strength"), "break needs time or strength"
        if element.get("time"):
            assert re.fullmatch(r"\d+(ms|s)", element.get("time")), element.get("time")
        assert not (element.text or "").strip() and len(element) == 0, "break must be empty"
    for child in element:
        _check_ssml_element(child)


def _spoken_text(element: ET.Element) -> str:
    return "".join(element.itertext())


def _check_speakable(text: str) -> None:
    assert not _EMOJI.search(text), f"emoji reaches the speech engine: {text!r}"
    assert not _MARKDOWN.search(text), f"Markdown reaches the speech engine: {text!r}"
    assert "http://" not in text and "https://" not in text, f"a URL would be read out: {text!r}"


def assert_valid_ssml(ssml: str) -> ET.Element:
    """Parse an SSML document (``<speak>...``) and check its elements; returns the root."""
    root = ET.fromstring(ssml)
    assert root.tag == "speak", f"SSML root is <{root.tag}>"
    _check_ssml_element(root)
    _check_speakable(_spoken_text(root))
    return root


def assert_valid_twiml(document: Union[str, bytes]) -> ET.Element:
    """Parse a TwiML document and check its structure; returns ``<Response>``."""
    raw = document.encode("utf-8") if isinstance(document, str) else document
    root = ET.fromstring(raw)
    assert root.tag == "Response", f"TwiML root is <{root.tag}>"
    assert not (root.text or "").strip(), "text directly inside <Response>"
    children = list(root)
    for index, child in enumerate(children):
        assert child.tag in RESPONSE_CHILDREN, f"<{child.tag}> inside <Response>"
        if child.tag == "Hangup":
            assert index == len(children) - 1, "<Hangup/> is not the last verb"
            assert len(child) == 0 and not (child.text or "").strip() and not child.attrib
        if child.tag == "Gather":
            _check_gather(child)
        if child.tag == "Say":
            _check_say(child)
        if child.tag == "Dial":
            nouns = list(child)
            assert len(nouns) == 1 and nouns[0].tag in ("Number", "Sip"), "<Dial> needs one <Number> or <Sip>"
            assert (nouns[0].text or "").strip(), "empty <Dial> target"
    for say in root.iter("Say"):
        assert say in children or any(say in list(g) for g in root.iter("Gather")), "<Say> outside Response/Gather"
    return root


def _check_gather(gather: ET.Element) -> None:
    unknown = set(gather.attrib) - GATHER_ATTRIBUTES
    assert not unknown, f"unknown Gather attributes {unknown}"
    inputs = set(gather.get("input", "dtmf").split())
    assert inputs and inputs <= {"speech", "dtmf"}, gather.get("input")
    for flag in ("bargeIn", "actionOnEmptyResult", "profanityFilter", "enhanced"):
        if flag in gather.attrib:
            assert gather.get(flag) in ("true", "false"), f"{flag}={gather.get(flag)!r}"
    if "speechTimeout" in gather.attrib:
        assert gather.get("speechTimeout") == "auto" or gather.get("speechTimeout").isdigit()
    for number in ("timeout", "numDigits"):
        if number in gather.attrib:
            assert gather.get(number).isdigit(), f"{number}={gather.get(number)!r}"
    if "method" in gather.attrib:
        assert gather.get("method") in ("GET", "POST")
    if "action" in gather.attrib:
        assert re.match(r"https?://[^/]+/", gather.get("action")), gather.get("action")
    assert not (gather.text or "").strip(), "text directly inside <Gather>"
    for child in gather:
        assert child.tag in GATHER_CHILDREN, f"<{child.tag}> inside <Gather>"
        if child.tag == "Say":
            _check_say(child)
        if child.tag == "Dial":
            nouns = list(child)
            assert len(nouns) == 1 and nouns[0].tag in ("Number", "Sip"), "<Dial> needs one <Number> or <Sip>"
            assert (nouns[0].text or "").strip(), "empty <Dial> target"


def _check_say(say: ET.Element) -> None:
    unknown = set(say.attrib) - SAY_ATTRIBUTES
    assert not unknown, f"unknown Say attributes {unknown}"
    assert _spoken_text(say).strip(), "empty <Say>"
    for child in say:
        _check_ssml_element(child)
    inner = ET.tostring(say, encoding="unicode")
    inner = inner[inner.index(">") + 1: inner.rindex("</Say>")]
    assert_valid_ssml(f"<speak>{inner}</speak>")


def say_ssml(root: ET.Element) -> str:
    """The SSML inside every ``<Say>`` of a TwiML document, concatenated."""
    out = []
    for say in root.iter("Say"):
        inner = ET.tostring(say, encoding="unicode")
        out.append(inner[inner.index(">") + 1: inner.rindex("</Say>")])
    return " ".join(out)


def gather_of(root: ET.Element) -> ET.Element:
    """The document's ``<Gather>`` (asserts there is one)."""
    gather = root.find("Gather")
    assert gather is not None, "no <Gather> in the response"
    return gather


def assert_valid_jambonz(verbs: Union[str, List[Dict[str, Any]]]) -> List[Dict[str, Any]]:
    """Check a jambonz verb array (gather/say/hangup, SSML texts); returns the verbs."""
    if isinstance(verbs, str):
        verbs = json.loads(verbs)
    assert isinstance(verbs, list) and verbs, "jambonz expects a non-empty array of verbs"
    for index, verb in enumerate(verbs):
        assert isinstance(verb, dict) and verb.get("verb") in JAMBONZ_VERBS, verb
        if verb["verb"] == "hangup":
            assert index == len(verbs) - 1, "hangup is not the last verb"
        if verb["verb"] == "say":
            assert_valid_ssml(verb["text"])
        if verb["verb"] == "gather":
            assert set(verb["input"]) <= {"speech", "digits"} and verb["input"], verb["input"]
            assert isinstance(verb.get("bargein"), bool)
            assert re.match(r"https?://[^/]+/", verb["actionHook"]), verb["actionHook"]
            for number in ("timeout", "numDigits", "interDigitTimeout"):
                if number in verb:
                    assert isinstance(verb[number], int) and verb[number] > 0
            if "say" in verb:
                assert_valid_ssml(verb["say"]["text"])
    return verbs


# ------------------------------------------------------------ the checks themselves


GOOD = ('<?xml version="1.0" encoding="UTF-8"?><Response><Gather input="speech dtmf" bargeIn="true" '
        'action="https://x.example/webhooks/twilio_voice/gather?turn=1" speechTimeout="auto">'
        '<Say voice="Polly.Joanna-Neural">Order <say-as interpret-as="digits">482913</say-as>.'
        '<break time="400ms"/>Bye.</Say></Gather></Response>')


def test_a_good_document_passes():
    root = assert_valid_twiml(GOOD)
    assert 'interpret-as="digits">482913<' in say_ssml(root)
    assert gather_of(root).get("bargeIn") == "true"


@pytest.mark.parametrize(
    "document",
    [
        "<Response><Say>unclosed</Response>",
        "<Reply><Say>hi</Say></Reply>",
        "<Response><Gather input='speech'><Gather/></Gather></Response>",
        "<Response><Gather input='speech voice'><Say>hi</Say></Gather></Response>",
        "<Response><Gather input='speech' bargeIn='yes'><Say>hi</Say></Gather></Response>",
        "<Response><Gather input='speech' colour='red'><Say>hi</Say></Gather></Response>",
        "<Response><Hangup/><Say>late</Say></Response>",
        "<Response><Say>Order is **on its way**</Say></Response>",
        "<Response><Say>Great \U0001F642</Say></Response>",
        "<Response><Say>see https://x.example</Say></Response>",
        "<Response><Say><say-as interpret-as='shout'>1</say-as></Say></Response>",
        "<Response><Say><blink>hi</blink></Say></Response>",
        "<Response><Say></Say></Response>",
    ],
)
def test_bad_documents_fail(document):
    with pytest.raises((AssertionError, ET.ParseError)):
        assert_valid_twiml(document)


def test_jambonz_checks():
    good = [{"verb": "gather", "input": ["speech", "digits"], "bargein": True, "actionHook": "https://x/y",
             "say": {"text": "<speak>Hi</speak>"}}]
    assert assert_valid_jambonz(json.dumps(good)) == good
    for bad in ([], [{"verb": "hangup"}, {"verb": "say", "text": "<speak>x</speak>"}],
                [{"verb": "say", "text": "<speak>**x**</speak>"}],
                [{"verb": "gather", "input": ["dtmf"], "bargein": True, "actionHook": "https://x/y"}]):
        with pytest.raises(AssertionError):
            assert_valid_jambonz(bad)
