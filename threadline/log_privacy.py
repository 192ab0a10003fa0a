"""A root logging filter that keeps personal values out of every log line.

``install()`` wraps the log record factory, so every record of every logger
(Rasa's, Sanic's, ours) is scrubbed (``threadline.pii.scrub``: typed
placeholders) when it is made, before any handler, file or console sees it,
and adds ``PersonalDataFilter`` to the root logger's handlers for records
made elsewhere. Lines without a digit or an "@" cost one regex search.
"""
from __future__ import annotations

import logging
from typing import Any

_INSTALLED = "_threadline_private"


def _scrub_record(record: logging.LogRecord) -> None:
    if getattr(record, _INSTALLED, False):
        return
    from threadline import pii

    try:
        message = record.getMessage()
    except Exception:  # a malformed record is logging's problem, not ours
        return
    cleaned = pii.scrub(message)
    if cleaned != message or record.args:
        record.msg, record.args = cleaned, ()
    if record.exc_info and not record.exc_text:
        record.exc_text = pii.scrub(logging.Formatter().formatException(record.exc_info))
    elif record.exc_text:
        record.exc_text = pii.scrub(record.exc_text)
    setattr(record, _INSTALLED, True)


class PersonalDataFilter(logging.Filter):
    """Replaces personal values in a record's message (and traceback) by typed placeholders."""

    def filter(self, record: logging.LogRecord) -> bool:
        _scrub_record(record)
        return True


_factory_installed = False


def install() -> None:
    """Scrub every log record from now on, in this process (idempotent)."""
    global _factory_installed
    factory = logging.getLogRecordFactory()
    # Once per process: another library may wrap the factory after us, and our
    # wrapper stays in its chain (wrapping again would stack up on every call).
    if not _factory_installed and not getattr(factory, _INSTALLED, False):
        _factory_installed = True

        def make_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = factory(*args, **kwargs)
            _scrub_record(record)
            return record

        setattr(make_record, _INSTALLED, True)
        logging.setLogRecordFactory(make_record)
    root = logging.getLogger()
    for handler in root.handlers:
        if not any(isinstance(f, PersonalDataFilter) for f in handler.filters):
            handler.addFilter(PersonalDataFilter())
