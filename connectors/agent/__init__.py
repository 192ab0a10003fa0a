"""The agent desk (``connectors.agent.AgentDeskInput`` in credentials.yml): one application.

``channel`` serves the routes, ``auth`` signs agents in (hashed tokens,
sessions, CSRF), ``views`` renders the pages, ``live`` streams case changes
and conversation events, ``conversation`` is what the desk does to a
customer's conversation.
"""
from connectors.agent.channel import AgentDeskInput, Refusal  # noqa: F401 (the package's interface)
