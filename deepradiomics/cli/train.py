"""`deepradiomics train CONFIG.yaml -o BUNDLE_DIR`: train the VQ segmentation network, write a bundle."""

from __future__ import annotations

import shlex
import sys

import click


@click.command("train", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("config", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "-o",
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Bundle folder to write (holds checkpoint.pt while training; rerun to resume).",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def command(config: str, out_dir: str, quiet: bool) -> None:
    """Train the VQ segmentation network described by CONFIG (YAML) and write a model bundle to -o.

    \b
    The bundle (model.pt, config.yaml with sha256, card.md, plus metrics.json/history.json) can be
    used by the vqhist feature class: `vqhist: {model: BUNDLE_DIR}` in a params file.
    Example: deepradiomics train params/train_cpu.yaml -o runs/vq-lgg-cpu
    """
    from ..errors import DeepRadiomicsError
    from ..training.loop import train_from_config

    try:
        metrics = train_from_config(
            config, out_dir, progress=not quiet, command="deepradiomics train " + " ".join(shlex.quote(a) for a in sys.argv[2:])
        )
    except DeepRadiomicsError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"wrote bundle {out_dir}: validation Dice {metrics['validation_dice_mean']}", err=True)
