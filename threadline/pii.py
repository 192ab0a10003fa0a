"""Personal data in text: found with Microsoft Presidio, replaced by typed placeholders or vault tokens.

``mask(text, customer_id)`` is what the connector pipeline runs on every
inbound message before Rasa sees it: card numbers (with the Luhn check),
IBANs (with their checksum) and US social security numbers become
``<CREDIT_CARD>``, ``<IBAN_CODE>``, ``<US_SSN>``; emails and phone numbers,
which fulfillment may need (a booking confirmation, a callback), become vault
tokens (``threadline.vault``): ``email-<id>@token.invalid`` (shaped like an
address, so the NLU's email entity and the booking form take it as they took
the address; ``.invalid`` can never be delivered) and ``<PHONE_NUMBER:<id>>``.
``scrub(text)`` replaces everything with placeholders and mints no token (log
lines, the bot's own output, undelivered messages).

Order numbers (6 digits), postal codes, amounts and dates are left alone:
only pattern recognizers with validation run (Presidio's credit card, IBAN,
email, phone via ``phonenumbers`` and US SSN recognizers), on a blank spaCy
English pipeline built in process from the installed spaCy (no model is
downloaded, ever), and Presidio's email check uses tldextract's bundled
public-suffix snapshot, never the network.
"""
from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

CREDIT_CARD = "CREDIT_CARD"
IBAN_CODE = "IBAN_CODE"
EMAIL_ADDRESS = "EMAIL_ADDRESS"
PHONE_NUMBER = "PHONE_NUMBER"
US_SSN = "US_SSN"
ENTITIES = (CREDIT_CARD, IBAN_CODE, EMAIL_ADDRESS, PHONE_NUMBER, US_SSN)
# Values fulfillment may need: kept (encrypted) in the vault behind a token.
TOKENIZED = frozenset({EMAIL_ADDRESS, PHONE_NUMBER})
# Presidio scores: validated cards, IBANs and emails score 1.0, phones 0.4,
# "123-45-6789"-shaped SSNs 0.5; bare nine-digit runs (0.05) are not SSNs here.
SCORE_THRESHOLD = 0.3
# Phone numbers are looked for as written in these regions (and in
# international form, with a "+", from anywhere).
PHONE_REGIONS = ("US", "GB", "DE", "FR", "IN", "CA", "AU")

TOKEN_RE = re.compile(r"email-[a-z2-7]{16}@token\.invalid|<PHONE_NUMBER:[a-z2-7]{16}>")
PLACEHOLDER_RE = re.compile(r"<(?:%s)(?::[a-z2-7]{16})?>" % "|".join(ENTITIES))
# A phone number has at least this many digits: six-digit order numbers and
# postal codes are valid local numbers somewhere, and must stay as they are.
PHONE_MIN_DIGITS = 8
# Every value looked for has a digit or an "@": text without either is clean.
_MAYBE = re.compile(r"[\d@]")


def placeholder(entity_type: str) -> str:
    """The typed placeholder of a value that is not kept (``<CREDIT_CARD>``)."""
    return f"<{entity_type}>"


def email_token(token_id: str) -> str:
    """The token that stands for an email address in text."""
    return f"email-{token_id}@token.invalid"


def phone_token(token_id: str) -> str:
    """The token that stands for a phone number in text."""
    return f"<PHONE_NUMBER:{token_id}>"


def token_id(text: str) -> Optional[str]:
    """The vault id inside a token (``email-<id>@token.invalid`` or ``<PHONE_NUMBER:<id>>``)."""
    match = TOKEN_RE.fullmatch(text.strip()) if text else None
    if not match:
        return None
    value = match.group(0)
    return value[len("email-"):len("email-") + 16] if value.startswith("email-") else value[len("<PHONE_NUMBER:"):-1]


def is_token(text: Any) -> bool:
    """Whether ``text`` is exactly one vault token."""
    return isinstance(text, str) and token_id(text) is not None


@dataclass(frozen=True)
class Found:
    """One personal value in a text."""

    entity_type: str
    start: int
    end: int
    score: float


@dataclass
class Masked:
    """A text with its personal values replaced, and what was found."""

    text: str
    found: List[str] = field(default_factory=list)  # entity types, in order
    tokens: List[str] = field(default_factory=list)  # vault ids minted or refreshed

    @property
    def changed(self) -> bool:
        """Whether anything was replaced."""
        return bool(self.found)


class _Engines:
    """Presidio's analyzer and anonymizer, built once per process (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._analyzer = None
        self._anonymizer = None
        self._building = False

    def analyzer(self):
        """The analyzer; None while it is being built (its own log lines are scrubbed by nothing)."""
        if self._analyzer is None:
            with self._lock:
                if self._building:
                    return None
                if self._analyzer is None:
                    self._building = True
                    try:
                        self._analyzer = _build_analyzer()
                    finally:
                        self._building = False
        return self._analyzer

    def anonymizer(self):
        if self._anonymizer is None:
            with self._lock:
                if self._anonymizer is None:
                    from presidio_anonymizer import AnonymizerEngine

                    self._anonymizer = AnonymizerEngine()
        return self._anonymizer


def _build_analyzer():
    import spacy
    import tldextract
    from presidio_analyzer import AnalyzerEngine, Pattern, RecognizerRegistry
    from presidio_analyzer.nlp_engine import SpacyNlpEngine
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer,
        EmailRecognizer,
        IbanRecognizer,
        PhoneRecognizer,
        UsSsnRecognizer,
    )

    # tldextract's bundled public-suffix snapshot; without suffix_list_urls=()
    # it would fetch the list from the network on first use.
    offline_suffixes = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)

    class OfflineEmailRecognizer(EmailRecognizer):
        """Presidio's email recognizer, checking domains against the bundled suffix list."""

        def validate_result(self, pattern_text: str) -> bool:
            return offline_suffixes(pattern_text.rpartition("@")[2]).fqdn != ""

    class BlankSpacyEngine(SpacyNlpEngine):
        """A blank English spaCy pipeline (a tokenizer): pattern recognizers need nothing more."""

        def load(self) -> None:
            self.nlp = {"en": spacy.blank("en")}

    # Presidio's card patterns want four groups; 13-digit cards are written 4-4-5.
    card_patterns = list(CreditCardRecognizer.PATTERNS) + [
        Pattern("13 digits (4-4-5)", r"\b\d{4}[- ]\d{4}[- ]\d{5}\b", 0.3)]

    nlp_engine = BlankSpacyEngine(models=[{"lang_code": "en", "model_name": "blank:en"}])
    nlp_engine.load()
    registry = RecognizerRegistry()
    registry.supported_languages = ["en"]
    for recognizer in (
        CreditCardRecognizer(patterns=card_patterns),
        IbanRecognizer(),
        OfflineEmailRecognizer(),
        PhoneRecognizer(supported_regions=PHONE_REGIONS),
        UsSsnRecognizer(),
    ):
        registry.add_recognizer(recognizer)
    return AnalyzerEngine(registry=registry, nlp_engine=nlp_engine, supported_languages=["en"])


_engines = _Engines()


def warm_up() -> None:
    """Build the engines now (a server does it at start-up, not on its first message)."""
    mask("warm up 4111 1111 1111 1111 jane@example.com", tokenize=False)


def find(text: Optional[str]) -> List[Found]:
    """The personal values in ``text``, in order (tokens and placeholders are not values)."""
    if not text or not _MAYBE.search(text):
        return []
    analyzer = _engines.analyzer()
    if analyzer is None:
        return []
    results = analyzer.analyze(text, language="en", entities=list(ENTITIES), score_threshold=SCORE_THRESHOLD)
    protected = [(m.start(), m.end()) for m in TOKEN_RE.finditer(text)]
    protected += [(m.start(), m.end()) for m in PLACEHOLDER_RE.finditer(text)]
    found = [
        Found(r.entity_type, r.start, r.end, r.score)
        for r in results
        if not any(start <= r.start and r.end <= end for start, end in protected)
        and (r.entity_type != PHONE_NUMBER or sum(ch.isdigit() for ch in text[r.start:r.end]) >= PHONE_MIN_DIGITS)
    ]
    return sorted(found, key=lambda f: (f.start, -f.score))


def mask(
    text: Optional[str],
    customer_id: Optional[str] = None,
    *,
    tokenize: bool = True,
    redis: Any = None,
) -> Masked:
    """``text`` with every personal value replaced.

    With ``tokenize`` and a ``customer_id``, emails and phone numbers are kept
    in the vault (``threadline.vault``) and replaced by their token; anything
    else, or everything without a customer, becomes its typed placeholder.
    """
    if not text:
        return Masked(text or "")
    found = find(text)
    if not found:
        return Masked(text)
    from presidio_anonymizer.entities import OperatorConfig, RecognizerResult

    minted: List[str] = []
    operators: Dict[str, OperatorConfig] = {
        entity: OperatorConfig("replace", {"new_value": placeholder(entity)}) for entity in ENTITIES
    }
    if tokenize and customer_id:
        for entity in TOKENIZED:
            spans = {text[f.start:f.end] for f in found if f.entity_type == entity}
            if spans:
                operators[entity] = OperatorConfig(
                    "custom", {"lambda": _tokenizer(entity, spans, customer_id, redis, minted)})
    results = [RecognizerResult(f.entity_type, f.start, f.end, f.score) for f in found]
    engine_result = _engines.anonymizer().anonymize(text, results, operators)
    kinds = [item.entity_type for item in sorted(engine_result.items, key=lambda item: item.start)]
    return Masked(engine_result.text, kinds, minted)


def _tokenizer(entity: str, spans: set, customer_id: str, redis: Any, minted: List[str]) -> Callable[[str], str]:
    from threadline import vault

    def tokenize(value: str) -> str:
        if value not in spans:  # Presidio checks the operator with a sample value first
            return placeholder(entity)
        ident = vault.store(entity, value, customer_id, redis=redis)
        minted.append(ident)
        return email_token(ident) if entity == EMAIL_ADDRESS else phone_token(ident)

    return tokenize


def scrub(text: Optional[str]) -> str:
    """``text`` with every personal value replaced by its typed placeholder (no token is minted)."""
    if not text or not _MAYBE.search(text):
        return text or ""
    return mask(text, tokenize=False).text


def scrub_value(value: Any) -> Any:
    """``value`` (text, or dicts and lists of them) with every string scrubbed."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {key: scrub_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub_value(item) for item in value]
    return value
