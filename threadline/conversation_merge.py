"""What a merged conversation carries forward, so neither side's state is lost.

Merging two customers interleaves both event logs by time. A tracker replays
only its latest session, and a session start of either side resets the
slots and the active task, so the merged log ends with a *carry* block: the
slots of both sides (where both set one, the later value wins; nothing set on
either side is dropped) and the task that was active most recently, still
asking for the slot it was asking for. The next turn, on either channel, sees
them all.
"""
import time
from typing import Any, Dict, Iterable, List, Optional, Tuple

from rasa.shared.core.constants import REQUESTED_SLOT
from rasa.shared.core.events import ActiveLoop, Event, SlotSet
from rasa.shared.core.trackers import DialogueStateTracker

# Slots that describe the merge or the session, not the customer.
NOT_CARRIED = frozenset({REQUESTED_SLOT, "session_started_metadata", "identity_merged_from"})


def _side_state(events: List[Event], slots: Iterable[Any]) -> Tuple[Dict[str, Tuple[Any, float]], Optional[Tuple[str, Optional[str], float]]]:
    """({slot: (value, when set)}, (active loop, requested slot, when activated) or None) of one side."""
    tracker = DialogueStateTracker.from_events("merge", events, list(slots))
    set_at: Dict[str, float] = {}
    loop_at = 0.0
    for event in events:
        if isinstance(event, SlotSet):
            set_at[event.key] = event.timestamp or 0.0
        elif isinstance(event, ActiveLoop) and event.name:
            loop_at = event.timestamp or 0.0
    values = {
        name: (value, set_at.get(name, 0.0))
        for name, value in tracker.current_slot_values().items()
        if value is not None and name not in NOT_CARRIED
    }
    loop = tracker.active_loop_name
    return values, ((loop, tracker.get_slot(REQUESTED_SLOT), loop_at) if loop else None)


def carried_state(into_events: List[Event], from_events: List[Event], slots: Iterable[Any]) -> List[Event]:
    """The events that restore both sides' state at the end of the merged log."""
    slots = list(slots)
    into_values, into_loop = _side_state(into_events, slots)
    from_values, from_loop = _side_state(from_events, slots)
    now = time.time()
    combined = dict(into_values)
    for name, (value, at) in from_values.items():
        if name not in combined or at > combined[name][1]:
            combined[name] = (value, at)
    carry: List[Event] = [SlotSet(name, value, timestamp=now) for name, (value, _) in sorted(combined.items())]
    loops = [loop for loop in (into_loop, from_loop) if loop]
    if loops:
        name, requested, _ = max(loops, key=lambda loop: loop[2])
        carry.append(ActiveLoop(name, timestamp=now))
        carry.append(SlotSet(REQUESTED_SLOT, requested, timestamp=now))
    return carry
