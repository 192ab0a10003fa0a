"""Cross-channel analytics: conversation events -> analytics tables -> KPIs.

``consumer`` reads the event broker (Rasa's SQL broker table by default,
RabbitMQ when ``RABBITMQ_URL`` is set), skips events it has counted already
(``event_id``) and hands each new one to ``fold``, which keeps the
``analytics_*`` tables (``threadline.db.models``); ``kpis`` defines and
computes the KPIs by day and channel. Keyed by customer, never by channel;
never a message's text, a phone number, an email or a name.
"""
