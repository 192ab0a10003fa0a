"""Test helpers shared across the test suite: a platform API recorder and payload builders."""
