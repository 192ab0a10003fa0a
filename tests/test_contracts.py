"""The contracts between the rooms stay visible: one settings registry, one key registry, documented."""
import re
from pathlib import Path

from threadline import keys, settings

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [p for d in ("connectors", "threadline", "actions") for p in (ROOT / d).rglob("*.py")]
README = (ROOT / "README.md").read_text()


def _code(path: Path) -> str:
    return path.read_text()


def test_only_the_settings_module_reads_the_environment():
    readers = [str(p.relative_to(ROOT)) for p in SOURCES
               if p.name != "settings.py" and re.search(r"os\.environ|os\.getenv|getenv\(", _code(p))]
    assert readers == []


def test_every_built_in_channel_setting_is_registered():
    from connectors.jambonz import JambonzInput
    from connectors.telegram import TelegramInput
    from connectors.twilio_voice import TwilioVoiceInput
    from connectors.webchat import WebchatInput
    from connectors.whatsapp import WhatsAppInput

    for channel in (WhatsAppInput, TelegramInput, WebchatInput, TwilioVoiceInput, JambonzInput):
        missing = set(channel.credential_env.values()) - set(settings.VARIABLES)
        assert not missing, f"{channel.__name__} reads unregistered {sorted(missing)}"


def test_only_the_key_registry_spells_redis_keys():
    areas = "tracker|dedupe|id|voice|whatsapp|webchat|desk|prefetch|outbound|payload|limit|stepup|lock"
    spelled = re.compile(rf"""["'](?:\{{?[a-z_]*\}}?:)?(?:{areas}):(?=[{{\w])""")
    offenders = [str(p.relative_to(ROOT)) for p in SOURCES
                 if p.name != "keys.py" and spelled.search(_code(p))]
    assert offenders == []


def test_the_readme_configuration_is_the_settings_registry():
    assert settings.markdown_table() in README, "regenerate it: make readme"


def test_the_readme_redis_layout_is_the_key_registry():
    assert keys.markdown_table() in README, "regenerate it: make readme"


def test_reserved_metadata_is_derived_from_the_typed_contract():
    from dataclasses import fields

    from threadline.message import RESERVED_KEYS, SIGNATURE_KEY, TurnMetadata

    assert RESERVED_KEYS == {f.name for f in fields(TurnMetadata) if f.name != "signed"} | {SIGNATURE_KEY}
    for name in ("channel", "channel_user_id", "message_id", "trace_id", "trust"):
        assert name in RESERVED_KEYS  # ARCHITECTURE.md's interface


def test_connectors_and_actions_never_import_each_other():
    for path in SOURCES:
        code = _code(path)
        if path.is_relative_to(ROOT / "actions"):
            assert not re.search(r"^\s*(from|import) connectors", code, re.M), path
        if path.is_relative_to(ROOT / "connectors"):
            assert not re.search(r"^\s*(from|import) actions", code, re.M), path
