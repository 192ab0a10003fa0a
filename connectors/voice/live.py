"""Which call a customer is on right now, and what others want said on it.

A voice webhook is a request and a response, so a message that arrives
meanwhile (an agent's reply from the desk) cannot be pushed into the call; it
waits in the call's queue and is spoken at the caller's next turn (the next
gather result, or the silence timeout, comes within seconds). Every turn
refreshes ``{p}:voice:live:{customer}``; the call's end deletes it.
"""
import json
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional

from threadline.keys import Keys
from threadline.message import Origin

LIVE_TTL = 120
PENDING_TTL = 6 * 3600


@dataclass(frozen=True)
class LiveCall:
    """A call in progress: its channel, call id and how its caller joined the customer."""

    channel: str
    call_id: str
    origin: str

    @property
    def may_hear_personal_data(self) -> bool:
        """A caller id matched to someone else's customer proves nothing, nor does answering our call."""
        return self.origin not in (Origin.CALLER_ID.value, Origin.OUTBOUND_CALL.value)


def on_turn(redis: Any, customer_id: str, call: LiveCall) -> None:
    """The call answered a turn: it is live for a little while longer."""
    redis.set(Keys().voice_live(customer_id), json.dumps(asdict(call)), ex=LIVE_TTL)


def ended(redis: Any, customer_id: Optional[str], channel: str, call_id: str) -> None:
    """The call is over: forget it (if it is still the customer's live one) and its queue."""
    keys = Keys()
    if customer_id:
        current = live_call(redis, customer_id)
        if current is not None and (current.channel, current.call_id) == (channel, call_id):
            redis.delete(keys.voice_live(customer_id))
    redis.delete(keys.voice_pending(channel, call_id))


def live_call(redis: Any, customer_id: str) -> Optional[LiveCall]:
    """The call the customer is on now, if any."""
    raw = redis.get(Keys().voice_live(customer_id))
    if not raw:
        return None
    try:
        return LiveCall(**json.loads(raw))
    except (TypeError, ValueError):
        return None


def queue_message(redis: Any, call: LiveCall, message: Dict[str, Any]) -> None:
    """Have ``message`` spoken at the caller's next turn."""
    key = Keys().voice_pending(call.channel, call.call_id)
    pipe = redis.pipeline(transaction=True)
    pipe.rpush(key, json.dumps(message))
    pipe.expire(key, PENDING_TTL)
    pipe.execute()


def take_messages(redis: Any, channel: str, call_id: str) -> List[Dict[str, Any]]:
    """The messages waiting for this call, oldest first (removed)."""
    key = Keys().voice_pending(channel, call_id)
    pipe = redis.pipeline(transaction=True)
    pipe.lrange(key, 0, -1)
    pipe.delete(key)
    raw, _ = pipe.execute()
    return [json.loads(item) for item in raw]
