"""`deepradiomics train CONFIG.yaml -o BUNDLE_DIR [--init BUNDLE [--freeze encoder]]`: train a segmentation network."""

from __future__ import annotations

import click

from .common import check_outputs, manifest_inputs, report_errors, setup_logging, verbosity_options

#: what `train` writes into the bundle folder (for the check that it overwrites no input)
TRAIN_WRITES = ("model.pt", "config.yaml", "card.md", "metrics.json", "history.json", "checkpoint.pt", "best.pt")


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
@click.option("--init", "init", default=None, metavar="BUNDLE", help="Fine-tune: start from this bundle (shipped name or folder; sha256 checked).")
@click.option(
    "--freeze",
    type=click.Choice(["encoder"]),
    default=None,
    help="With --init: keep the encoder fixed (VQ: encoder and codebook; DLR: conv1-conv6).",
)
@verbosity_options
@report_errors
def command(config: str, out_dir: str, init: str | None, freeze: str | None, verbose: int, quiet: bool) -> None:
    """Train the segmentation network described by CONFIG (YAML) and write a model bundle to -o.

    \b
    model.type in CONFIG picks the architecture: vqseg (the VQ network of the vqhist features) or
    dlrcnn (the DLR patch CNN of the fisher features); it decides the sampler, loss and optimiser.
    The bundle (model.pt, config.yaml with sha256, card.md, plus metrics.json/history.json) keeps the
    weights of the epoch with the best validation Dice. -v shows one line per epoch.
    Examples:
      deepradiomics train params/train_cpu.yaml -o runs/vq-lgg-cpu
      deepradiomics train params/train_dlr.yaml -o runs/dlr
      deepradiomics train my_data.yaml -o runs/vq-mine --init vq-lgg-cpu --freeze encoder
    """
    from ..io import Output, check_writable_folder
    from ..models import resolve_bundle
    from ..training.loop import load_config, train_from_config

    setup_logging(verbose, quiet)
    check_writable_folder(out_dir, f"-o '{out_dir}'")  # before hours of training
    inputs = [("CONFIG", config)]
    manifest = load_config(config)["data"].get("manifest")
    if manifest is not None:
        inputs += manifest_inputs(manifest)
    if init is not None:
        inputs.append(("--init", resolve_bundle(init)))
    check_outputs([Output("-o", out_dir, TRAIN_WRITES)], inputs)
    metrics = train_from_config(config, out_dir, progress=not quiet, init=init, freeze=freeze)
    best, last = metrics.get("validation_dice_best"), metrics.get("validation_dice_last")
    summary = "no validation patients" if best is None else (
        f"validation Dice best {best:.4f} (epoch {metrics['best_epoch']}), last {last:.4f} (epoch {metrics['last_epoch']}); "
        f"kept {metrics['kept']}"
    )
    click.echo(f"wrote bundle {out_dir}: {summary}", err=True)
