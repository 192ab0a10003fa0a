"""The connectors load from a credentials.yml the way `rasa run --credentials` reads it."""
import pytest
from rasa.core.run import create_http_input_channels
from rasa.shared.exceptions import RasaException

from connectors.telegram import TelegramInput
from connectors.whatsapp import WhatsAppInput

CREDENTIALS = """\
connectors.whatsapp.WhatsAppInput:
  verify_token: ${WHATSAPP_VERIFY_TOKEN}
  app_secret: ${WHATSAPP_APP_SECRET}
  access_token: ${WHATSAPP_ACCESS_TOKEN}
  phone_number_id: ${WHATSAPP_PHONE_NUMBER_ID}
  api_base: ${WHATSAPP_API_BASE}
connectors.telegram.TelegramInput:
  bot_token: ${TELEGRAM_BOT_TOKEN}
  secret_token: ${TELEGRAM_SECRET_TOKEN}
  api_base: ${TELEGRAM_API_BASE}
"""

ENV = {
    "WHATSAPP_VERIFY_TOKEN": "verify",
    "WHATSAPP_APP_SECRET": "secret",
    "WHATSAPP_ACCESS_TOKEN": "token",
    "WHATSAPP_PHONE_NUMBER_ID": "106540352242922",
    "WHATSAPP_API_BASE": "http://127.0.0.1:1/v21.0",
    "TELEGRAM_BOT_TOKEN": "1:abc",
    "TELEGRAM_SECRET_TOKEN": "tg-secret",
    "TELEGRAM_API_BASE": "",
}


@pytest.fixture
def credentials_file(tmp_path):
    path = tmp_path / "credentials.yml"
    path.write_text(CREDENTIALS)
    return str(path)


def test_rasa_builds_both_channels_from_the_environment(credentials_file, monkeypatch):
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    whatsapp, telegram = create_http_input_channels(None, credentials_file)
    assert isinstance(whatsapp, WhatsAppInput) and isinstance(telegram, TelegramInput)
    assert whatsapp.config["api_base"] == "http://127.0.0.1:1/v21.0"
    assert telegram.config["api_base"] == "https://api.telegram.org"  # empty: the default
    assert whatsapp.get_output_channel().name() == "whatsapp"
    assert telegram.get_output_channel().name() == "telegram"


def test_a_missing_secret_fails_naming_the_variable(credentials_file, monkeypatch):
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("TELEGRAM_SECRET_TOKEN", "")
    with pytest.raises(RasaException, match="TELEGRAM_SECRET_TOKEN"):
        create_http_input_channels(None, credentials_file)
    monkeypatch.delenv("WHATSAPP_APP_SECRET")
    with pytest.raises(RasaException, match="WHATSAPP_APP_SECRET"):
        create_http_input_channels(None, credentials_file)
