"""Helpers shared by the subcommands: error reporting and logging set-up."""

from __future__ import annotations

import functools
import logging

import click


def report_errors(function):
    """Turn a DeepRadiomicsError into a one-line ``Error: ...`` on stderr and exit status 2."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        from ..errors import DeepRadiomicsError

        try:
            return function(*args, **kwargs)
        except DeepRadiomicsError as exc:
            raise click.ClickException(str(exc)) from exc

    return wrapper


def quiet_pyradiomics(verbose: int) -> None:
    """PyRadiomics logs INFO/WARNING chatter to stderr from import; keep errors only unless -v."""
    import radiomics  # the command is about to extract anyway; importing it first lets us tame its logger

    level = {0: logging.ERROR, 1: logging.WARNING}.get(verbose, logging.INFO)
    radiomics.setVerbosity(level)
    logging.getLogger("radiomics").propagate = False
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def parse_modalities(values) -> dict[str, str]:
    modalities = {}
    for text in values:
        if "=" not in text:
            raise click.BadParameter(f"{text!r} is not NAME=PATH, e.g. -m t1=t1.nii.gz", param_hint="-m/--modality")
        name, path = text.split("=", 1)
        if not name or name == "Image":
            raise click.BadParameter(f"{text!r}: give a modality name other than 'Image' (IMAGE is the main image)", param_hint="-m/--modality")
        modalities[name] = path
    return modalities


verbose_option = click.option("-v", "--verbose", count=True, help="More log output on stderr (-v warnings, -vv info).")
