"""``deepradiomics batch``: a manifest -> one table, resumable."""

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


@click.command("batch")
@click.argument("params", type=click.Path(dir_okay=False))
@click.argument("manifest", type=click.Path(dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None, help="Output .csv, .json or .parquet (default: CSV on stdout).")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=1, show_default=True, help="Parallel worker processes.")
@click.option("--out-dir", type=click.Path(file_okay=False), default=None, help="Keep per-case results here; a re-run skips finished cases.")
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Fitted params: reuse the descriptors `deepradiomics fit --cache-dir` kept here (and keep those of new cases).",
)
@click.option("-s", "--setting", "settings", multiple=True, metavar="KEY=VALUE", help="Override a params setting (repeatable).")
@click.option("--scheduler", default="processes", show_default=True, help="'processes', 'dask' (local Dask cluster with --jobs workers) or a Dask scheduler address tcp://HOST:PORT.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress bar on stderr.")
@click.option("--mode", type=click.Choice(["features", "voxel"]), default="features", show_default=True, help="One value per feature, or one map per feature per case (written under --maps-dir; the table holds their paths).")
@click.option("--maps-dir", type=click.Path(file_okay=False), default=None, help="--mode voxel: folder for the maps, one subfolder per case.")
@click.option("--map-format", type=click.Choice(["nrrd", "nii.gz"]), default="nrrd", show_default=True, help="--mode voxel: file format of the maps.")
@click.option("--map-grid", type=click.Choice(["image", "native"]), default="image", show_default=True, help="--mode voxel: maps on each image's grid, or on PyRadiomics' own.")
@click.option("--layout", type=click.Choice(["deepradiomics", "pyradiomics"]), default="deepradiomics", show_default=True, help="pyradiomics: the table PyRadiomics' CLI writes (manifest columns, its keys in its order, no index, no deepradiomics diagnostics).")
@verbosity_options
@report_errors
def command(params, manifest, output, jobs, out_dir, cache_dir, settings, scheduler, progress, mode, maps_dir, map_format, map_grid, layout, verbose, quiet):
    """Extract the features named in PARAMS for every case of MANIFEST.

    \b
    MANIFEST is a CSV with columns ID, Image, Mask, optional Label and Image_<name> for extra
    modalities (paths relative to the manifest); other columns pass through. A failed case becomes
    a row with its message in diagnostics_Error; the batch carries on and exits 0. Cases run largest
    first (by input file size); --out-dir resumes an interrupted batch.

    
      deepradiomics batch params/combined.yaml cases.csv -o features.csv --jobs 2 --out-dir cache/
      deepradiomics batch params/classical.yaml cases.csv --layout pyradiomics -o pyradiomics_style.csv
      deepradiomics batch params/voxel.yaml cases.csv --mode voxel --maps-dir maps/ -o maps.csv --out-dir cache/
    """
    from ..batch import BatchRun, check_scheduler
    from ..errors import ParamsError
    from ..io import Output, check_output, check_writable_folder, write_table
    from ..voxel import VoxelOutput

    setup_logging(verbose, quiet)
    # everything that can be refused is refused before the first case runs
    check_output(output)
    if out_dir is not None:
        check_writable_folder(out_dir, f"--out-dir '{out_dir}'")
    if cache_dir is not None:
        check_writable_folder(cache_dir, f"--cache-dir '{cache_dir}'")
    voxel = None
    if mode == "voxel":
        if maps_dir is None:
            raise ParamsError("--mode voxel writes one file per map: give the folder with --maps-dir DIR")
        check_writable_folder(maps_dir, f"--maps-dir '{maps_dir}'")
        voxel = VoxelOutput(str(maps_dir), map_format, map_grid)
    check_scheduler(scheduler)
    extractor = load_extractor(params, settings)
    frame, _ = read_cohort(manifest)  # a bad or empty manifest fails before any worker starts
    outputs = [Output("-o", output), *cache_outputs("--out-dir", out_dir), *cache_outputs("--cache-dir", cache_dir)]
    if voxel is not None:
        outputs.append(Output("--maps-dir", maps_dir, tuple(voxel.folder(i).name for i in frame["ID"])))
    check_outputs(outputs, [*params_inputs(params, extractor), *manifest_inputs(manifest)])
    run = BatchRun()
    table = extractor.execute_batch(
        manifest,
        jobs=jobs,
        out_dir=out_dir,
        progress=progress and not quiet,
        scheduler=scheduler,
        run=run,
        layout=layout,
        voxel=voxel,
        descriptors_dir=cache_dir,
        source=str(params),
    )
    write_table(table, output, index=layout == "deepradiomics")
    failed = run.failed
    if not quiet:
        ok = len(table) - len(failed)
        reused = len(run.reused)
        click.echo(
            f"{ok} of {len(table)} cases extracted: {len(run.computed) - len(failed)} computed, {reused} read from --out-dir"
            + (f", {len(failed)} failed" if failed else ""),
            err=True,
        )
    if failed:
        click.echo(f"{len(failed)} failed:", err=True)
        for case_id, message in failed:
            click.echo(f"  {case_id}: {message}", err=True)
