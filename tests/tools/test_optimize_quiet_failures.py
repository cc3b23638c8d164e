"""Issue 29, item 13: `aidsafe optimize --optimizer gepa` with a prompt
model that fails prints its one `Error:` line, not the library's tracebacks
first (GEPA logs a traceback for every failed reflection)."""

from __future__ import annotations

from click.testing import CliRunner

from aidsafe.cli._optimize import optimize_command
from aidsafe.models._engine import register_engine, unregister_engine

from .test_optimize import POLICY_COT, SCORE_5, SINGLE


class Broken:
    """A model whose every call fails (a bad prompt model)."""

    def complete(self, request):
        raise ConnectionError("the reflection model is unreachable")

    def identity(self):
        return {"backend": "broken"}


def test_gepa_with_a_failing_prompt_model_prints_no_library_traceback(fake, recipe_file, four, tmp_path):
    fake.rules = [(POLICY_COT, lambda call: {"reason": "Hasty.", "score": "2"} if "hasty" in call.user else SCORE_5),
                  ("THINKER: reason and answer.", {"thoughts": ["A hasty thought."], "response": "Sure."})]
    register_engine("broken", lambda spec: Broken())
    try:
        result = CliRunner().invoke(optimize_command, [
            str(recipe_file(SINGLE)), "--trainset", str(four), "--out", str(tmp_path / "o"), "--optimizer", "gepa",
            "--judge-model", "fake:test", "--prompt-model", "fake:broken", "--val-fraction", "0.25", "--trials", "2"])
    finally:
        unregister_engine("broken")
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "unreachable" in errors[0]
