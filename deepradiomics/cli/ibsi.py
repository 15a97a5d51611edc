"""``deepradiomics ibsi``: IBSI 1 compliance of the classical features (digital phantom, CT configurations A-E)."""

from __future__ import annotations

import click

from ..ibsi import CONFIGURATION_NAMES, INTERPOLATIONS
from .common import check_outputs, report_errors, setup_logging, verbosity_options


def _configurations(ctx, param, value: str) -> list[str]:
    """``phantom,A,C`` -> the configuration names; an unknown one is a usage error naming the valid ones."""
    names = []
    for text in value.split(","):
        name = text.strip()
        if not name:
            continue
        key = name if name == "phantom" else name.upper()
        if key not in CONFIGURATION_NAMES:
            raise click.BadParameter(f"'{name}' is not an IBSI configuration: give some of {','.join(CONFIGURATION_NAMES)}")
        if key not in names:
            names.append(key)
    if not names:
        raise click.BadParameter(f"give at least one of {','.join(CONFIGURATION_NAMES)}")
    return names


@click.command("ibsi")
@click.option(
    "--data",
    "data_dir",
    type=click.Path(),
    default=None,
    help="IBSI data folder (digital_phantom/, ct_phantom/, reference_values/). Default: ../shared/data/ibsi from the "
    "working directory, else beside the repository.",
)
@click.option(
    "--config",
    "configurations",
    default=",".join(CONFIGURATION_NAMES),
    show_default=True,
    callback=_configurations,
    help="Comma-separated configurations: the digital phantom and the CT configurations A-E.",
)
@click.option("-o", "--output", type=click.Path(), default=None, help="Write the compliance table (one row per mapped IBSI value) to .csv, .json or .parquet.")
@click.option("--pyradiomics", "alone", is_flag=True, help="Compute with PyRadiomics' RadiomicsFeatureExtractor alone (the same params) instead of deepradiomics' Extractor.")
@click.option(
    "--interpolation",
    type=click.Choice(INTERPOLATIONS),
    default="pyradiomics",
    show_default=True,
    help="pyradiomics: PyRadiomics resamples (what a params file gets); ibsi: the image and mask are interpolated as "
    "the IBSI manual prescribes before the same extraction.",
)
@verbosity_options
@report_errors
def command(data_dir, configurations, output, alone, interpolation, verbose, quiet):
    """Compare the classical features with the IBSI 1 consensus values.

    Each configuration runs through the normal extraction with its IBSI settings; every value that
    PyRadiomics' IBSI benchmark maps to an IBSI tag is compared with the reference (within tolerance,
    unrounded or at 3 significant digits). The summary on stdout counts, per configuration, the mapped
    values, those that pass, those that fail for a documented reason (deepradiomics.ibsi.KNOWN_DEVIATIONS)
    and those that fail unexplained; -o writes the whole table with each value, reference and cause.

    \b
    Examples:
      deepradiomics ibsi --config phantom
      deepradiomics ibsi -o ibsi_report.csv
      deepradiomics ibsi --config C --interpolation ibsi
    """
    from .. import ibsi
    from ..errors import CaseError
    from ..io import Output, check_output, write_table

    setup_logging(verbose, quiet)
    check_output(output)
    folder = ibsi.find_data_dir(data_dir)
    check_outputs([Output("-o", output)], [("the IBSI data folder", folder)])
    available = []
    for name in configurations:
        missing = ibsi.CONFIGURATIONS[name].missing(folder)
        if missing:
            click.echo(f"skipped IBSI configuration {name}: '{missing[0]}' not found", err=True)
        else:
            available.append(name)
    if not available:
        raise CaseError(f"no IBSI configuration can run from '{folder}' (files missing, see above): give the IBSI data folder with --data")
    table = ibsi.compliance_table(folder, available, engine="pyradiomics" if alone else "deepradiomics", interpolation=interpolation)
    summary = ibsi.summarize(table)
    click.echo(summary.to_string())
    if output is not None:
        write_table(table, output, index=False)
    unexplained = int(summary["failed_unexplained"].sum())
    if unexplained:
        click.echo(f"{unexplained} value(s) fail without a known cause: see the 'status' column of the table (-o)", err=True)
