"""``deepradiomics fit``: fit the cohort-level classes of a params file on a manifest's cases."""

from __future__ import annotations

import click

from .common import (
    cache_outputs,
    check_outputs,
    load_extractor,
    manifest_inputs,
    params_inputs,
    read_cohort,
    report_errors,
    setup_logging,
    verbosity_options,
)


@click.command("fit")
@click.argument("params", type=click.Path(dir_okay=False))
@click.argument("manifest", type=click.Path(dir_okay=False))
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Folder for the fitted artifacts and the fitted params.yaml.")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=1, show_default=True, help="Parallel worker processes for the per-case descriptors.")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None, help="Keep per-case descriptors here and reuse them in later fits.")
@click.option("-s", "--setting", "settings", multiple=True, metavar="KEY=VALUE", help="Override a params setting (repeatable).")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress bar on stderr.")
@verbosity_options
@report_errors
def command(params, manifest, out_dir, jobs, cache_dir, settings, progress, verbose, quiet):
    """Fit every class of PARAMS that learns a cohort-level state (e.g. a GMM) on the cases of MANIFEST.

    Writes OUT/<class>/ (the fitted state as arrays: state.npz + config.yaml with its sha256) and
    OUT/params.yaml, the params of PARAMS pointing to those artifacts, to use with extract, batch and
    study exactly like any other params file. Example:

    \b
      deepradiomics fit params/fisher.yaml train.csv -o fitted/ --jobs 2
      deepradiomics batch fitted/params.yaml test.csv -o features.csv
    """
    from ..extractor import FITTED_PARAMS
    from ..io import Output, check_writable_folder

    setup_logging(verbose, quiet)
    check_writable_folder(out_dir, f"-o '{out_dir}'")
    if cache_dir is not None:
        check_writable_folder(cache_dir, f"--cache-dir '{cache_dir}'")
    extractor = load_extractor(params, settings)
    if not extractor.fitted_classes:
        raise click.ClickException(f"{params} names no class that needs fitting (requires_fit); use it directly with extract or batch")
    read_cohort(manifest)  # an empty manifest is refused naming it, before any class is built
    outputs = [Output("-o", out_dir, (FITTED_PARAMS, *extractor.fitted_classes)), *cache_outputs("--cache-dir", cache_dir)]
    check_outputs(outputs, [*params_inputs(params, extractor), *manifest_inputs(manifest)])
    extractor.fit(manifest=manifest, jobs=jobs, cache_dir=cache_dir, progress=progress and not quiet)
    path = extractor.save_fitted(out_dir)
    if not quiet:
        names = ", ".join(extractor.fitted_classes)
        click.echo(f"fitted {names}; wrote {path}", err=True)
    click.echo(str(path))
