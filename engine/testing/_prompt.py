"""Reading DSPy's rendered adapter prompts: the one parser both test doubles
(:mod:`aidsafe.testing.fake` and :mod:`aidsafe.testing.mock_server`) use.

Standard library only: the mock server must run without DSPy installed.
"""

from __future__ import annotations

import re

_OUTPUTS_START = "Your output fields are:"
_OUTPUTS_END = "All interactions will be structured"
_FIELD_START = re.compile(r"^\s*\d+\.\s+`([^`]+)`\s*\(", re.M)


def output_fields(system: str) -> dict[str, str]:
    """The output fields DSPy lists under "Your output fields are:" in a
    system prompt (JSONAdapter and ChatAdapter alike), as ``{name: type
    text}`` in prompt order, e.g. ``{"reasoning": "str", "choice":
    "Literal['A', 'B']"}``. Types may hold brackets and parentheses. A prompt
    without the list gives ``{}``."""
    return {name: type_text for name, (type_text, _) in output_field_docs(system).items()}


def output_field_docs(system: str) -> dict[str, tuple[str, str]]:
    """Like :func:`output_fields`, with each field's description:
    ``{name: (type text, description)}`` (the description is ``""`` when the
    prompt gives none)."""
    start = system.find(_OUTPUTS_START)
    if start < 0:
        return {}
    section = system[start + len(_OUTPUTS_START):]
    end = section.find(_OUTPUTS_END)
    if end >= 0:
        section = section[:end]
    matches = list(_FIELD_START.finditer(section))
    fields = {}
    for index, match in enumerate(matches):
        # The type may itself contain parentheses/brackets, so scan to the
        # matching ")" instead of trusting a regex.
        i, depth = match.end(), 1
        while i < len(section) and depth:
            if section[i] in "([":
                depth += 1
            elif section[i] in ")]":
                depth -= 1
            i += 1
        stop = matches[index + 1].start() if index + 1 < len(matches) else len(section)
        desc = section[i:stop].strip()
        fields[match.group(1)] = (section[match.end():i - 1].strip(), desc[1:].strip() if desc.startswith(":") else desc)
    return fields


def input_field(text: str, name: str) -> str | None:
    """The rendered value of input field ``name`` in a user message
    (``[[ ## name ## ]]`` sections, as both adapters write inputs) or at the
    head of a system message (where the engine's adapters put the inputs that
    are the same for every record), or ``None`` when there is no such
    section."""
    match = re.search(r"\[\[ ## " + re.escape(name)
                      + r" ## \]\]\n(.*?)(?=\n\n\[\[ ## |\n\nRespond|\n\nYour input fields are:|\Z)", text, re.S)
    return match.group(1).strip() if match else None


__all__ = ["input_field", "output_field_docs", "output_fields"]
