"""A root logging filter that keeps personal values out of every log line.

``install()`` wraps the log record factory, so every record of every logger
(Rasa's, Sanic's, ours) is scrubbed (``threadline.pii.scrub``: typed
placeholders) when it is made, before any handler, file or console sees it,
and adds ``PersonalDataFilter`` to the root logger's handlers for records
made elsewhere. Lines without a digit or an "@" cost one regex search.
"""
from __future__ import annotations

import logging
import re
import threading
from typing import Any

_INSTALLED = "_threadline_private"
_WITHHELD = "(withheld by the personal-data filter)"
_MAYBE = re.compile(r"[\d@]")
_busy = threading.local()


def _scrub_record(record: logging.LogRecord) -> None:
    if getattr(record, _INSTALLED, False):
        return
    try:
        message = record.getMessage()
    except Exception:  # a malformed record is logging's problem, not ours
        return
    setattr(record, _INSTALLED, True)
    if getattr(_busy, "active", False):
        # Logged by the analyzer while it scrubs another line: never analysed
        # (that would recurse), so withheld if it could hold a value.
        if _MAYBE.search(message):
            record.msg, record.args, record.exc_info, record.exc_text = _WITHHELD, (), None, None
        return
    _busy.active = True
    try:
        _scrub(record, message)
    finally:
        _busy.active = False


def _scrub(record: logging.LogRecord, message: str) -> None:
    from threadline import pii

    cleaned = pii.scrub(message)
    if cleaned != message or record.args:
        record.msg, record.args = cleaned, ()
    if record.exc_info and not record.exc_text:
        record.exc_text = pii.scrub(logging.Formatter().formatException(record.exc_info))
    elif record.exc_text:
        record.exc_text = pii.scrub(record.exc_text)


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
