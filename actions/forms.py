"""What every form shares: reading answers the way customers give them.

``TaskFormValidation`` is the base of every form's validator: subclass it
instead of ``FormValidationAction`` (it also acknowledges a channel switch,
see ``ContinuityFormValidation``). Being abstract, it is never registered as
an action itself. It gives every task the same behaviour:

* **Answers in any order, validated in the form's order.** A value for any of
  the form's slots is taken whenever it comes (the domain's entity mappings,
  plus a form's own ``extract_<slot>`` readers) and validated in the order
  the form asks for them, so a later check sees the earlier values of the
  same message.
* **Corrections and changes of mind.** A new value for a slot that had one
  replaces it and the form goes on: ``changed_this_turn`` tells a form what
  changed, and a yes or no given in the same message as a change is not
  taken as the confirmation (``confirmation_slot``): the form reads the new
  values back and asks again. ``is_correction`` says whether a message is an
  answer even though NLU read it as a digression ("actually make it 11am" is
  not "stop").
* **Specific re-asks.** A message that is meant as an answer (``ANSWER_ATTEMPTS``)
  but fills nothing gets the form's ``reask`` for the slot it asked, and the
  slot is asked again, never the generic fallback. Digressions, other tasks
  and small talk still leave the form to their rules.
"""
import abc
from typing import Any, Dict, List, Optional, Set, Text

from rasa_sdk import Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.forms import REQUESTED_SLOT
from rasa_sdk.types import DomainDict
from rasa_sdk import utils

from actions.context import latest_intent, latest_text
from actions.continuity import ContinuityFormValidation, known_before_latest
from actions.tasks import DIGRESSIONS, task_for

# Intents whose message is meant as an answer to what the form asked, even when it fills nothing.
ANSWER_ATTEMPTS = frozenset({"provide_info", "nlu_fallback", "affirm", "deny", "out_of_scope"})
# Digressions that are never a correction, whatever the message says.
NEVER_ANSWERS = frozenset({"request_human", "link_channel", "provide_link_code", "greet", "challenge_bot"})
# Words that mark a change of mind or a correction ("actually make it 11am", "wrong email, it's ...").
CHANGE_CUES = (
    "actually", "instead", "make it", "change", "switch", "rather", "can we do", "could we do", "can i do",
    "can you do", "how about", "what about", "i meant", "i mean", "sorry", "wrong", "not ", "no,", "no ",
    "correction", "prefer", "move it", "update", "oops", "my bad", "better",
)


def mentions_change(text: str) -> bool:
    """Whether the message words itself as a correction or a change of mind."""
    lowered = f" {text.lower().strip()} "
    return any(cue in lowered for cue in CHANGE_CUES)


def is_correction(tracker: Tracker) -> bool:
    """Whether the latest message may carry a new value for the form, whatever NLU read.

    Answers and task intents may; a digression only when it is worded as a
    change ("actually make it 11am", read as "stop"); a request for a person
    or another channel, a greeting or "are you a bot" never.
    """
    intent = latest_intent(tracker)
    text = latest_text(tracker)
    if text.startswith("/") or intent in NEVER_ANSWERS:
        return False
    if intent in DIGRESSIONS:
        return mentions_change(text)
    return True


def asked(tracker: Tracker) -> Optional[str]:
    """The slot the form asked for before this message."""
    return tracker.get_slot(REQUESTED_SLOT)


class TaskFormValidation(ContinuityFormValidation, abc.ABC):
    """Base of every form validator: answers in any order, corrections, specific re-asks."""

    #: A yes/no slot that confirms everything else (read back again after a change).
    confirmation_slot: Optional[str] = None

    def reask(self, slot: str, dispatcher: CollectingDispatcher, tracker: Tracker) -> Optional[Dict[Text, Any]]:
        """Say what was missing from an answer to ``slot`` (the form then asks again).

        May return more slot values to set (``requested_slot: None`` ends the form).
        """
        dispatcher.utter_message(response="utter_reask")
        return None

    def reask_slots(self) -> Set[str]:
        """Slots whose unanswered question gets ``reask`` (those not validated in their own ``validate_``)."""
        return set()

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict):
        events = await super().run(dispatcher, tracker, domain)
        slot = asked(tracker)
        answered = any(e.get("event") == "slot" and e.get("name") not in (REQUESTED_SLOT, "continuity_acknowledged")
                       for e in events)
        if (
            slot
            and not answered
            and self.is_answering(tracker)
            and self.attempts_an_answer(tracker)
            and slot in self.reask_slots()
        ):
            extra = self.reask(slot, dispatcher, tracker) or {}
            events.append(SlotSet(slot, None))  # keeps the form (not the fallback) on this message
            events += [SlotSet(name, value) for name, value in extra.items()]
        return events

    def attempts_an_answer(self, tracker: Tracker) -> bool:
        """Whether the message is meant as an answer: an answer intent, or this very task asked for again."""
        intent = latest_intent(tracker)
        task = task_for(self.form_name())
        return intent in ANSWER_ATTEMPTS or bool(task and intent in task.start_intents)

    def is_answering(self, tracker: Tracker) -> bool:
        """Whether the form runs on the customer's latest message (not returning after a digression)."""
        events = tracker.events
        for index in range(len(events) - 1, -1, -1):
            event = events[index]
            if event.get("event") == "user":
                break
            if event.get("event") == "action" and event.get("name") not in (
                self.form_name(), "action_listen", "action_extract_slots", None,
            ):
                return False
            if event.get("event") == "action_execution_rejected":
                return False
        return (tracker.active_loop or {}).get("name") == self.form_name()

    async def get_extraction_events(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[Dict[Text, Any]]:
        """The form's own readers run on a new message only (not when it returns after a digression)."""
        if (tracker.active_loop or {}).get("name") == self.form_name() and not self.is_answering(tracker):
            return []
        return await super().get_extraction_events(dispatcher, tracker, domain)

    async def get_validation_events(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[Dict[Text, Any]]:
        """Validate this message's values in the form's order; a change withholds the confirmation."""
        domain_order = self.domain_slots(domain)
        candidates = tracker.slots_to_validate()
        ranked = sorted(candidates.items(),
                        key=lambda item: domain_order.index(item[0]) if item[0] in domain_order else len(domain_order))
        results: Dict[Text, Any] = {}
        order: List[str] = []
        for name, value in ranked:
            # what the form needs may depend on what was just validated (the order's postal code)
            order = await self.required_slots(domain_order, dispatcher, tracker, domain)
            if name not in order:
                continue
            if name == self.confirmation_slot and self.changed_this_turn(tracker, results, order):
                results[name] = None  # a yes or no beside a change: read the new values back first
                continue
            method = getattr(self, f"validate_{name.replace('-', '_')}", None)
            if method is None:
                results.setdefault(name, value)
                continue
            output = await utils.call_potential_coroutine(method(value, dispatcher, tracker, domain))
            if isinstance(output, dict):
                results.update(output)
                tracker.slots.update(output)
        order = await self.required_slots(domain_order, dispatcher, tracker, domain)
        confirmation = self.confirmation_slot
        if confirmation in order and confirmation not in results and self.changed_this_turn(tracker, results, order):
            results[confirmation] = None
        return [SlotSet(name, value) for name, value in results.items()]

    def changed_this_turn(self, tracker: Tracker, results: Dict[Text, Any], order: List[str]) -> Set[str]:
        """The form's slots whose value this message replaced or cleared (not those filled for the first time)."""
        return {
            name for name, value in results.items()
            if name in order and name != self.confirmation_slot
            and known_before_latest(tracker, name) is not None and known_before_latest(tracker, name) != value
        }
