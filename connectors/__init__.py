"""Threadline's channel connectors: one Rasa ``InputChannel`` per file on one shared base.

``connectors.base`` holds the pipeline every channel shares (verify, parse, dedupe,
identify, forward to Rasa) and the output-channel base; ``connectors.outbound`` the
retrying HTTP sender; ``connectors.markup`` Markdown conversion and length limits.
Channels are referenced from credentials.yml by class path, for example
``connectors.whatsapp.WhatsAppInput``.
"""
