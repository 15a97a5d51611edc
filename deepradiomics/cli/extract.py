"""``deepradiomics extract``: one case -> one row."""

from __future__ import annotations

import click

from ._common import load_extractor, parse_modalities, report_errors, setup_logging, verbosity_options


@click.command("extract")
@click.argument("params", type=click.Path(dir_okay=False))
@click.argument("image", type=click.Path())
@click.argument("mask", type=click.Path())
@click.option("-m", "--modality", "modalities", multiple=True, metavar="NAME=PATH", help="Add a named modality for deep classes (repeatable), e.g. -m t1=t1.nii.gz.")
@click.option("--label", type=str, default=None, help="Label value of the region of interest (default: params setting.label, else 1).")
@click.option("-s", "--setting", "settings", multiple=True, metavar="KEY=VALUE", help="Override a params setting (repeatable), e.g. -s binWidth=10.")
@click.option("--id", "case_id", default=None, help="Case ID for the row index (default: the image file name).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None, help="Output .csv, .json or .parquet (default: CSV on stdout).")
@verbosity_options
@report_errors
def command(params, image, mask, modalities, label, settings, case_id, output, verbose, quiet):
    """Extract the features named in PARAMS from IMAGE within MASK.

    \b
    IMAGE is the image the classical (PyRadiomics) classes read; IMAGE and MASK may be files or
    DICOM series folders. Example:
      deepradiomics extract params/combined.yaml flair.nii.gz mask.nii.gz -m t1=t1.nii.gz -m t1ce=t1ce.nii.gz
    """
    from pathlib import Path

    from ..batch import parse_label
    from ..io import check_output, write_table

    setup_logging(verbose, quiet)
    check_output(output)
    named = parse_modalities(modalities)
    extractor = load_extractor(params, settings)
    case_id = case_id or Path(image).name.split(".")[0]
    value = None if label is None else parse_label(label, "--label")
    row = extractor.execute(image, mask, modalities=named, label=value, case_id=case_id)
    table = row.to_frame().T.infer_objects()  # features float64, diagnostics as they are
    table.index.name = "ID"
    write_table(table, output)
