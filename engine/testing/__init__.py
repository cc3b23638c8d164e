"""Test and benchmark helpers for the engine and for users' own CI: a local
mock LLM server, a scripted fake engine, and :class:`FakeHub`, a local fake
of the Hugging Face Hub that ``aidsafe export --push-to-hub`` can push to."""

from aidsafe._util.lazy import lazy_exports

__all__ = ["FakeHub", "FakeRepo"]

__getattr__, __dir__ = lazy_exports(__name__, {"FakeHub": ".hub", "FakeRepo": ".hub"})
