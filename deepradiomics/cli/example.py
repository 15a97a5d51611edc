"""``deepradiomics example``: the paths of a shipped example case (no download), like PyRadiomics' getTestCase."""

from __future__ import annotations

import click

from .common import report_errors


@click.command("example")
@click.argument("name", required=False, default="lgg")
@click.option("--manifest", type=click.Path(dir_okay=False), default=None, help="Also write a batch manifest of every example case here.")
@click.option("--shell", is_flag=True, help="Print the arguments of `extract` (IMAGE MASK -m NAME=PATH ...) on one line.")
@report_errors
def command(name, manifest, shell):
    """Print the files of the example case NAME shipped in the package (lgg or brain1; default lgg).

    \b
      deepradiomics example lgg
      deepradiomics extract params/combined.yaml $(deepradiomics example lgg --shell)
    """
    import shlex

    from ..data import example_case, example_manifest

    case = example_case(name)
    if manifest:
        click.echo(f"wrote {example_manifest(manifest)}", err=True)
    if shell:
        modalities = [f"-m {shlex.quote(f'{role}={path}')}" for role, path in case.items() if role not in ("Image", "Mask")]
        click.echo(" ".join([shlex.quote(str(case["Image"])), shlex.quote(str(case["Mask"])), *modalities]))
        return
    for role, path in case.items():
        click.echo(f"{role}\t{path}")
