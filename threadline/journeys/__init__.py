"""Proactive journeys: designed in YAML (``journeys/``), run by a durable worker, answered on any channel.

``definitions`` (the YAML and its checks), ``rules`` (quiet hours in the
customer's time zone, frequency cap, wait scaling), ``store`` (instances, due
steps and the send log in the business database), ``service`` (start, emit,
cancel, replies) and ``worker`` (claim, decide, send). The sending itself runs
in the rasa server: ``connectors.journeys``. Operators:
``python -m threadline.journeys``.
"""
