"""Options and argument helpers shared by several commands, defined once."""

from __future__ import annotations

from pathlib import Path

import click


def cache_options(func):
    """Add ``--cache-dir`` (env ``AIDSAFE_CACHE_DIR``) and ``--no-cache`` to a
    command; it receives them as ``cache_dir`` (a Path or None) and
    ``no_cache`` (bool)."""
    func = click.option("--no-cache", is_flag=True, help="Bypass the cache: read nothing, write nothing.")(func)
    func = click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), envvar="AIDSAFE_CACHE_DIR",
                        help="Cache directory (default: cache/ in the project; env AIDSAFE_CACHE_DIR).")(func)
    return func


def _judge_api_base_option():
    return click.option("--judge-api-base", help="OpenAI-compatible endpoint for --judge-model.")


def _judge_api_key_env_option():
    return click.option("--judge-api-key-env", metavar="VAR",
                        help="Environment variable holding the judges' API key (its name, never the key).")


def judge_model_options(func):
    """Add ``--judge-model``, ``--judge-api-base`` and ``--judge-api-key-env``:
    the command receives ``judge_model``, ``judge_api_base`` and
    ``judge_api_key_env`` (each None when not given)."""
    options = [
        click.option("--judge-model", help="Model string replacing every judge model of the judges file, e.g. "
                                           "local:default or openai/gpt-4o-mini."),
        _judge_api_base_option(),
        _judge_api_key_env_option(),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def judging_options(func):
    """Add the options ``eval`` and ``bench`` share: ``--judges``,
    ``--judge-api-base``, ``--judge-api-key-env``, ``--workers``, ``--report``, ``--json``,
    ``--quiet`` and the cache options."""
    options = [
        click.option("--judges", "judges", default="judges", show_default=True,
                     help="Judges file: a path, or a name in recipes/ (judges = recipes/judges.yaml)."),
        _judge_api_base_option(),
        _judge_api_key_env_option(),
        click.option("--workers", type=click.IntRange(min=1), help="Model calls in flight at once (default 1)."),
        click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path),
                     help="Write a self-contained HTML report (charts need the `report` extra: matplotlib)."),
        click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
                     help="Write the summary as JSON."),
        click.option("--quiet", "-q", is_flag=True, help="No progress bar."),
    ]
    func = cache_options(func)
    for option in reversed(options):
        func = option(func)
    return func


def model_overrides(models: tuple[str, ...] | list[str]) -> dict[str, str]:
    """``--model NAME=MODEL`` values as ``{name: model string}`` (a bad value
    is a user error naming the expected form)."""
    from aidsafe._util.errors import UserError
    from aidsafe.models._engine import parse_override

    try:
        return dict(parse_override(m) for m in models)
    except UserError as exc:  # a malformed option is misuse: exit 2 with the usage line
        raise click.BadParameter(str(exc).removeprefix("--model "), param_hint="'--model'") from None


__all__ = ["cache_options", "judge_model_options", "judging_options", "model_overrides"]
