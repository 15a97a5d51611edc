"""``deepradiomics robustness``: robustness of every feature class to intensity scale and shift."""

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

#: what `robustness` writes into its output folder (for the check that it overwrites no input)
ROBUSTNESS_WRITES = (
    "robustness.csv", "domains.csv", "icc.csv", "icc_summary.csv", "icc_pairwise.csv", "histogram_ratios.csv",
    "histogram_summary.csv", "classification.csv", "features.csv", "timing.csv", "notes.txt", "robustness.png",
)


@click.command("robustness")
@click.argument("params", type=click.Path(dir_okay=False))
@click.argument("manifest", type=click.Path(dir_okay=False))
@click.option("--labels", type=click.Path(dir_okay=False), default=None, help="Labels table with ID and the --target column (default: the manifest's own columns).")
@click.option("--target", default=None, help="Binary label column for the classification degradation, e.g. grade (optional).")
@click.option("--positive", default=None, help="Positive class of --target (default: the larger of its two values).")
@click.option("--model", type=click.Choice(["logistic", "dlr"]), default="logistic", show_default=True, help="Study model trained on unperturbed features.")
@click.option("--kinds", default="scale,shift", show_default=True, help="Perturbations, comma-separated: scale, shift.")
@click.option("--levels", default="0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1.0", show_default=True, help="Perturbation levels s (comma-separated; 0 is always added).")
@click.option("--region", type=click.Choice(["image", "foreground"]), default="image", show_default=True, help="Perturb the whole image/input (the paper's) or only its foreground (voxels > 0).")
@click.option(
    "--domain",
    type=click.Choice(["auto", "input", "image"]),
    default="auto",
    show_default=True,
    help="input: each class perturbs its own network input after its preprocessing (the paper's definition); "
    "image: the raw image; auto: input where a class can, image for the others (classical classes).",
)
@click.option("--limit", type=int, default=None, help="Use only the first N cases of MANIFEST.")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=1, show_default=True, help="Parallel worker processes.")
@click.option("--scheduler", default="processes", show_default=True, help="'processes', 'dask' or a Dask scheduler address tcp://HOST:PORT.")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None, help="Keep per-case results here; a re-run resumes.")
@click.option("-o", "--out-dir", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress bar on stderr.")
@verbosity_options
@report_errors
def command(params, manifest, labels, target, positive, model, kinds, levels, region, domain, limit, jobs, scheduler, cache_dir, out_dir, progress, verbose, quiet):
    """Sweep intensity scale and shift over the cases of MANIFEST for every class in PARAMS.

    Level s: scale x' = (1 + s) x, shift x' = x + s sd (sd: the foreground standard deviation), over the
    whole image/input (default, as in the paper) or its foreground (--region foreground). --domain input
    (the paper's definition) perturbs what each deep class feeds its network, after its own preprocessing
    (vqhist, fisher: the z-scored slices, where sd = 1; cnn: the scaled patches, sd per patch); --domain
    image perturbs the raw image (a z-scored input then undoes a scale); auto (default) uses input where a
    class can and image for the classical classes. Every (case, level) is extracted like a batch (--jobs,
    --scheduler, --cache-dir resume, error rows). Writes robustness.csv (per domain and level), domains.csv
    (each class's domain), icc.csv and icc_summary.csv (ICC(2,1)/(3,1) per feature and family),
    histogram_ratios.csv (histogram classes), classification.csv (with --target), robustness.png
    (difference ratio and ICC against s). Example:

    \b
      deepradiomics robustness params/combined.yaml cases.csv --target grade --jobs 2 -o robustness_out/
    """
    from ..io import Output, check_writable_folder
    from ..study.robustness import run_robustness

    setup_logging(verbose, quiet)
    check_writable_folder(out_dir, f"--out-dir '{out_dir}'")
    if cache_dir is not None:
        check_writable_folder(cache_dir, f"--cache-dir '{cache_dir}'")
    extractor = load_extractor(params)
    read_cohort(manifest)
    inputs = [*params_inputs(params, extractor), *manifest_inputs(manifest), ("--labels", labels)]
    check_outputs([Output("-o", out_dir, ROBUSTNESS_WRITES), *cache_outputs("--cache-dir", cache_dir)], inputs)
    result = run_robustness(
        extractor,
        manifest,
        kinds=[k.strip() for k in kinds.split(",") if k.strip()],
        levels=levels,
        region=region,
        domain=domain,
        limit=limit,
        labels=labels,
        target=target,
        positive=positive,
        model=model,
        jobs=jobs,
        scheduler=scheduler,
        out_dir=cache_dir,
        progress=progress and not quiet,
    )
    out = result.write(out_dir)
    for note in result.notes:
        click.echo(f"Note: {note}", err=True)
    click.echo(result.icc_summary.to_csv(index=False, float_format="%.4g"), nl=False)
    timing = result.timing
    click.echo(f"{timing['cases']} cases, {timing['extractions']} extractions in {timing['seconds']:.0f} s with {jobs} job(s); wrote {out}", err=True)
