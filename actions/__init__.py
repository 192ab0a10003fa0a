"""Threadline fulfillment: one module per feature area, found by rasa-sdk.

Nothing here knows which channel a customer is on: connectors normalise every
platform into the same intents, entities and metadata.
"""
