"""``aidsafe show``: a recipe resolved (after ``extends``) and its stage graph."""

from __future__ import annotations

import click

from aidsafe.cli._errors import user_errors


@click.command("show")
@click.argument("recipe")
@user_errors
def show_command(recipe):
    """Print RECIPE resolved (after extends) and its stage graph."""
    from aidsafe.config._recipe import load_recipe
    from aidsafe.models._inspect import inspection_models
    from aidsafe.pipeline._compile import compile_recipe
    from aidsafe.runtime._plan import describe_recipe

    loaded = load_recipe(recipe)
    click.echo(describe_recipe(compile_recipe(loaded, inspection_models(loaded), cache=None)))


__all__ = ["show_command"]
