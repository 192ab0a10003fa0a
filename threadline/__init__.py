"""Threadline's shared runtime: settings, Redis, identity, tracker store, business DB.

Used by the connectors (inside the rasa server) and by the action server alike;
those two never import each other.
"""
