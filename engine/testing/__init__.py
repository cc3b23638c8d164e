"""Test and benchmark helpers for the engine (local mock LLM server, ...)."""
