"""JSON forms of DSPy's lm15 ``Request`` and ``Response``: the request's is
hashed into a call's cache key, the response's is what the cache stores.

DSPy 3.4 keeps lm15's exact serde in a private module
(``dspy._vendor.lm15.serde``); it is used while it is there. A DSPy without
it gets :class:`LocalCodec`, written against the public dataclasses of
``dspy.lm15`` only. Its forms differ from lm15's, so call keys differ too: a
cache written with one codec is recomputed (never misread) with the other,
and the engine drops an entry it cannot decode.
"""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path
from typing import Any, Callable, NamedTuple

PRIVATE_SERDE = "dspy._vendor.lm15.serde"
TAG = "__lm15__"  # names the dataclass a JSON object was made from


class Codec(NamedTuple):
    """The three conversions the caching engine needs, and where they come from."""

    request_to_dict: Callable[[Any], dict]
    response_to_dict: Callable[[Any], dict]
    response_from_dict: Callable[[dict], Any]
    source: str  # PRIVATE_SERDE or "local"


class LocalCodec:
    """A JSON codec for any of ``dspy.lm15``'s public dataclasses: an object
    becomes ``{"__lm15__": class name, field: value, ...}`` (init fields
    only), tuples become lists and back (by the field's annotation), paths
    become strings and back. A response's ``provider_data`` (the provider's
    raw extras) is left out, as lm15's own serde leaves it out."""

    @classmethod
    def encode(cls, value: Any) -> Any:
        """``value`` as plain JSON data."""
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            out = {TAG: type(value).__name__}
            for f in dataclasses.fields(value):
                if f.init and not (f.name == "provider_data" and type(value).__name__ == "Response"):
                    out[f.name] = cls.encode(getattr(value, f.name))
            return out
        if isinstance(value, (list, tuple)):
            return [cls.encode(v) for v in value]
        if isinstance(value, dict) or hasattr(value, "items"):
            return {str(k): cls.encode(v) for k, v in value.items()}
        if isinstance(value, Path):
            return str(value)
        return value

    @classmethod
    def decode(cls, data: Any) -> Any:
        """The objects :meth:`encode` made ``data`` from; ``ValueError`` for a
        class ``dspy.lm15`` does not export."""
        if isinstance(data, list):
            return [cls.decode(v) for v in data]
        if not isinstance(data, dict):
            return data
        if TAG not in data:
            return {k: cls.decode(v) for k, v in data.items()}
        import dspy.lm15 as lm15

        name = data[TAG]
        kind = getattr(lm15, name, None) if name in getattr(lm15, "__all__", ()) else None
        if not (isinstance(kind, type) and dataclasses.is_dataclass(kind)):
            raise ValueError(f"not a public dspy.lm15 dataclass: {name!r}")
        kwargs = {}
        for f in dataclasses.fields(kind):
            if not f.init or f.name not in data:
                continue
            value = cls.decode(data[f.name])
            annotation = str(f.type)
            if isinstance(value, list) and "tuple" in annotation:
                value = tuple(value)
            elif isinstance(value, str) and "Path" in annotation and "str" not in annotation:
                value = Path(value)
            kwargs[f.name] = value
        return kind(**kwargs)

    @classmethod
    def response_from_dict(cls, data: dict) -> Any:
        """A ``Response`` from :meth:`encode`'s form of one."""
        response = cls.decode(data)
        if type(response).__name__ != "Response":
            raise ValueError("not a stored response")
        return response


def load_codec() -> Codec:
    """lm15's own serde where this DSPy has it, else :class:`LocalCodec`."""
    try:
        serde = importlib.import_module(PRIVATE_SERDE)
        return Codec(serde.request_to_dict, serde.response_to_dict, serde.response_from_dict, PRIVATE_SERDE)
    except (ImportError, AttributeError):
        return Codec(LocalCodec.encode, LocalCodec.encode, LocalCodec.response_from_dict, "local")


CODEC = load_codec()
request_to_dict, response_to_dict, response_from_dict = CODEC[:3]

__all__ = ["CODEC", "Codec", "LocalCodec", "load_codec", "request_to_dict", "response_from_dict", "response_to_dict"]
