"""``deepradiomics params``: the params files shipped with the package (list, show, copy)."""

from __future__ import annotations

import click

from .common import check_outputs, report_errors


def _summary(text: str) -> str:
    """The first line of a params file's leading comment (what the file is for)."""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            return stripped.lstrip("#").strip()
        if stripped:
            break
    return ""


@click.group("params", invoke_without_command=True)
@click.pass_context
@report_errors
def command(ctx):
    """List the params files shipped with deepradiomics; `show NAME` prints one, `copy NAME FILE` writes it.

    Wherever a command takes a params file, a shipped name works too:

    \b
      deepradiomics params
      deepradiomics params show classical > my.yaml
      deepradiomics extract classical flair.nii.gz mask.nii.gz
    """
    if ctx.invoked_subcommand is not None:
        return
    from ..data import params_dir, shipped_params

    for name in shipped_params():
        click.echo(f"{name:<14} {_summary((params_dir() / f'{name}.yaml').read_text(encoding='utf-8'))}")


def _shipped(name: str):
    from ..data import shipped_params, shipped_params_file
    from ..errors import ParamsError, did_you_mean

    path = shipped_params_file(name)
    if path is None:
        names = shipped_params()
        raise ParamsError(f"no shipped params file '{name}'.{did_you_mean(name, names)} Shipped: {', '.join(names)}")
    return path


@command.command("show")
@click.argument("name")
@report_errors
def show(name):
    """Print the shipped params file NAME (e.g. classical) on stdout."""
    click.echo(_shipped(name).read_text(encoding="utf-8"), nl=False)


@command.command("copy")
@click.argument("name")
@click.argument("destination", type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Replace DESTINATION if it exists.")
@report_errors
def copy(name, destination, force):
    """Write a copy of the shipped params file NAME to DESTINATION (refuses to replace a file without --force)."""
    from pathlib import Path

    from ..errors import ParamsError
    from ..io import Output

    target = Path(destination)
    source = _shipped(name)
    check_outputs([Output("DESTINATION", target)], [(f"the shipped params file '{name}'", source)])
    if target.exists() and not force:
        raise ParamsError(f"'{target}' exists: choose another name, or give --force to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
    click.echo(f"wrote {target}", err=True)
