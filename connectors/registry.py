"""Output channels by channel name, taken from the running rasa server's input channels.

``rasa run`` registers every channel of credentials.yml and keeps them in
``app.ctx.input_channels`` (its own ``trigger_intent?output_channel=`` API looks
them up there too). Code inside the server that must message a customer
outside of a webhook request, such as the agent desk, asks this registry for
the channel's output::

    output = output_channel(request.app, identity.last_channel(customer_id))
    if output is not None:
        await output.send_text_message(customer_id, "Hello from the team")
"""
from typing import Any, List, Optional

from rasa.core.channels.channel import InputChannel, OutputChannel


def input_channels(app: Any) -> List[InputChannel]:
    """The input channels the server was started with."""
    return list(getattr(getattr(app, "ctx", None), "input_channels", None) or [])


def output_channel(app: Any, name: Optional[str]) -> Optional[OutputChannel]:
    """An output channel that can message customers on ``name``, or None.

    None when no such channel is running or it cannot send on its own (Rasa's
    REST channel; a voice channel, whose output only answers the current
    turn: messages for a caller go through ``connectors.voice.live``).
    """
    if not name:
        return None
    for channel in input_channels(app):
        if channel.name() == name:
            get_output = getattr(channel, "get_output_channel", None)
            output = get_output() if get_output else None
            if output is not None and getattr(output, "pushes", True):
                return output
    return None


def channel_label(app: Any, name: Optional[str]) -> str:
    """How the assistant names a channel to customers ("WhatsApp", "the web chat")."""
    for channel in input_channels(app):
        if channel.name() == name and getattr(channel, "channel_label", ""):
            return channel.channel_label
    return (name or "another channel").replace("_", " ").title()
