"""``aidsafe validate``: check recipes and judges files, every problem at once."""

from __future__ import annotations

import click

from aidsafe.cli._errors import user_errors


@click.command("validate")
@click.argument("recipes", nargs=-1, required=True)
@user_errors
def validate_command(recipes):
    """Check RECIPES (files, or names in recipes/) and report every problem."""
    from aidsafe._util.errors import RecipeError, UserError
    from aidsafe.config._recipe import load_recipe
    from aidsafe.evaluation._judge_specs import is_judges_file, load_judges

    failed = 0
    for ref in recipes:
        try:
            if is_judges_file(ref):
                judges = load_judges(ref)
                click.echo(f"{ref}: ok (judges file, {len(judges.judges)} judges)")
                continue
            recipe = load_recipe(ref)
        except RecipeError as exc:
            failed += 1
            click.echo(str(exc), err=True)
            continue
        except UserError as exc:
            failed += 1
            click.echo(f"{ref}: {exc}", err=True)
            continue
        click.echo(f"{ref}: ok ({len(recipe.stages)} stages, {len(recipe.agents)} agents)")
        for warning in recipe.warnings:
            click.echo(f"warning: {warning}", err=True)
    if failed:
        raise click.ClickException(f"{failed} of {len(recipes)} recipe(s) invalid")


__all__ = ["validate_command"]
