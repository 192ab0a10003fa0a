"""What every voice channel shares: speech rendering, call state, call-quality events.

``speech`` (SSML, spoken choices, the prompt), ``calls`` (per-call state in
Redis, events, barge-in inference) and ``channel`` (``VoiceInput``, the call
flow on the shared connector pipeline); everything is importable from here.

A voice connector (``twilio_voice``, ``jambonz``) is a ``VoiceInput``. Its
platform sends three kinds of webhook, all through the base pipeline
(verify -> decode -> parse -> dedupe -> identify -> Rasa)::

    POST /webhooks/<name>/webhook   a call comes in: "/greet" goes to Rasa for the caller,
                                    the customer lookups are prefetched in the background
    POST /webhooks/<name>/gather    the caller spoke or keyed digits (or said nothing)
    POST /webhooks/<name>/status    the call's status changed (completed, busy, ...)
    POST /webhooks/<name>/outbound  a call we placed (``place_call``) was answered: the prompt,
                                    nothing sent to Rasa (see ``connectors.voice.outbound``)

and gets back a document (TwiML, jambonz verbs) that speaks the bot's replies
and listens again. The subclass only verifies, reads its platform's fields into
a ``VoiceRequest`` and renders a ``Prompt``.

Rendering (``Prompt``): Markdown and emoji never reach the speech engine;
6-digit order numbers and other long digit strings are read digit by digit
(``<say-as interpret-as="digits">``), codes such as tracking numbers character by
character, phone numbers as telephone numbers; messages are separated by
``<break>``. Buttons become spoken choices ("For Track an order, press 1 or
say track an order."); the keypad digit, or the title spoken back, maps to the
button's payload. Keypad 0 always asks for a human ("/request_human"). Links
and images get "I've sent the link to your WhatsApp." - and are sent there -
only when the customer has a messaging channel; otherwise they are left out.

Per call, in Redis (prefix ``THREADLINE_KEY_PREFIX``, default ``threadline``):

``{p}:voice:call:{channel}:{call id}``     hash: customer, turn, the last prompt and
                                         when it was sent, no-input count, status history
``{p}:voice:choices:{channel}:{call id}``  hash: ``d:<digit>`` / ``t:<title>`` -> payload
``{p}:voice:events``                     stream of call-quality events (all calls)

Call-quality events, kept apart from intent success: ``barge_in``,
``no_input``, ``low_confidence``, ``caller_hangup``, ``call_completed`` and
``call_failed`` (busy, no answer, failed, canceled). Neither Twilio nor jambonz
says in its gather result whether the caller interrupted the prompt, so a
barge-in is inferred: the caller's input is taken to have started at
``received - input length - end-of-speech wait``; when that is earlier than
the prompt's estimated speaking time (words at ~160 per minute plus breaks)
minus half a second, it was a barge-in. The estimate errs towards "no barge-in"
(prompt audio starts later than we assume; digits may have ended with ``#``).

A turn's URL carries its number (``/gather?turn=N``), so a platform retry of
the same turn is recognised (dedupe) and answered with the same document.

Metadata added to each ``UserMessage`` (besides the base's): ``call_sid``,
``channel_label`` ("the phone"), ``voice_event`` ("call_start" for the
greeting), ``input_mode`` (speech | dtmf), ``speech_confidence``, ``digits``,
``chosen_payload``, ``barge_in`` and ``low_confidence`` when they apply. The
caller id gives trust "low": personal data still needs step-up verification.
"""

from connectors.voice.calls import (  # noqa: F401 (the package's interface)
    BARGE_IN,
    BARGE_IN_MARGIN,
    CALL_COMPLETED,
    CALL_FAILED,
    CALL_TTL,
    CALLER_HANGUP,
    CHOICES_TTL,
    EVENT_CALL,
    EVENT_INPUT,
    EVENT_STATUS,
    LOW_CONFIDENCE,
    NO_INPUT,
    CallState,
    VoiceRequest,
    caller_identity,
    choices_key,
    chosen_payload,
    events_key,
    read_events,
    record_event,
    started_during_prompt,
    store_choices,
)
from connectors.voice.channel import (  # noqa: F401
    GOODBYE,
    HUMAN_HINT,
    MAX_NO_INPUT,
    NOT_CAUGHT,
    TROUBLE,
    UNAVAILABLE,
    VoiceInput,
    VoiceOutput,
)
from connectors.voice.elsewhere import MESSAGING_LABELS  # noqa: F401
from connectors.voice.speech import (  # noqa: F401
    HANGUP_RESPONSES,
    HUMAN_KEY,
    HUMAN_PAYLOAD,
    WORDS_PER_SECOND,
    Choice,
    Prompt,
    build_prompt,
    choices_ssml,
    estimated_seconds,
    make_choices,
    message_ssml,
    normalise_title,
    sent_elsewhere_ssml,
    speak,
    speech_text,
    spoken_preview,
    ssml_fragment,
)
