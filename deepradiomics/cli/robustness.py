"""``deepradiomics robustness``: deep and classical feature robustness to intensity scale and shift."""

from __future__ import annotations

import click

from ._common import quiet_pyradiomics, report_errors, verbose_option


@click.command("robustness")
@click.argument("params", type=click.Path(dir_okay=False))
@click.argument("manifest", type=click.Path(dir_okay=False))
@click.option(
    "--labels",
    type=click.Path(dir_okay=False),
    default=None,
    help="CSV with ID and the --target column (e.g. the same cases.csv) for the classification degradation.",
)
@click.option("--target", default=None, help="Binary label column in --labels, e.g. grade.")
@click.option("--positive", default=None, help="Positive class of --target (default: the second value in sorted order).")
@click.option(
    "--levels",
    default="0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1.0",
    show_default=True,
    help="Perturbation levels s (comma-separated; 0 is always added).",
)
@click.option("--limit", type=int, default=None, help="Use only the first N cases of MANIFEST.")
@click.option("-o", "--out-dir", required=True, type=click.Path(file_okay=False), help="Output folder.")
@verbose_option
@report_errors
def command(params, manifest, labels, target, positive, levels, limit, out_dir, verbose):
    """Sweep intensity scale and shift over the cases of MANIFEST for the classes in PARAMS.

    Level s means, over the foreground (voxels > 0): vqhist input z' = z (1 + s) (scale) or z + s
    (shift) after vqhist's z-scoring; classical image I' = mu + (1 + s)(I - mu) or I + s sd with the
    foreground mean mu and sd. Writes deep_robustness.csv (histogram ratio sum|h - h0| / sum h0, mean and
    sd over cases), classical_icc.csv (ICC(2,1) and ICC(3,1) per feature across levels), with --labels
    classification.csv (out-of-fold AUC of a logistic model trained unperturbed), robustness.csv and
    robustness.png. Example:

    \b
      deepradiomics robustness params/combined.yaml cases.csv --labels cases.csv --target grade \\
          --limit 10 -o robustness_out/
    """
    from ..study.robustness import parse_levels, run_robustness

    quiet_pyradiomics(verbose)
    result = run_robustness(
        params, manifest, levels=parse_levels(levels), limit=limit, labels=labels, target=target, positive=positive, progress=True
    )
    out = result.write(out_dir)
    for note in result.notes:
        click.echo(f"Note: {note}", err=True)
    click.echo(result.combined.to_csv(index=False, float_format="%.4g"), nl=False)
    timing = result.timing
    click.echo(
        f"{timing['cases']} cases x {timing['perturbations_per_case']} perturbations: deep {timing['deep_seconds']:.1f} s, "
        f"classical {timing['classical_seconds']:.1f} s ({timing['seconds_per_case']:.1f} s per case); wrote {out}",
        err=True,
    )
