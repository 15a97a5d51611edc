"""``deepradiomics plugins``: the registered feature classes."""

from __future__ import annotations

import click


@click.command("plugins")
def command():
    """List the registered feature classes: name, family and source distribution."""
    from ..errors import PluginError
    from ..registry import get_registry

    registry = get_registry()
    click.echo(f"{'name':<12} {'family':<10} source")
    for name in registry.names():
        entry = registry.entry(name)
        try:
            family = entry.family
        except PluginError as exc:
            click.echo(f"{name:<12} {'BROKEN':<10} {entry.source}: {exc}", err=True)
            continue
        click.echo(f"{name:<12} {family:<10} {entry.source}")
    for problem in registry.problems:
        click.echo(f"warning: {problem}", err=True)
