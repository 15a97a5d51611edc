"""``deepradiomics explain``: responsible regions of chosen codewords of a vqhist model (feature ablation).

Contributed to the ``deepradiomics`` command by the vqhist plugin through the entry-point group
``deepradiomics.commands``; this module imports only click at module level (``--help`` reads it).
"""

from __future__ import annotations

import click

from deepradiomics.cli.common import (
    check_outputs,
    load_extractor,
    manifest_inputs,
    params_inputs,
    parse_modalities,
    read_cohort,
    report_errors,
    setup_logging,
    verbosity_options,
)

#: what `explain` writes into its output folder (for the check that it overwrites no input)
EXPLAIN_WRITES = (
    "response.nii.gz", "response_cw*.nii.gz", "summary.csv", "labels_descriptive.csv", "dunn_descriptive.csv", "notes.txt",
    "overlay_*.png", "montage.png", "per_patient.csv", "regions.csv", "dunn.csv",
)


def _parse_codewords(ctx, param, value):
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of codeword indices, e.g. 17,230") from None


def _parse_label_names(ctx, param, value):
    names = {}
    for item in (value or "").split(","):
        if not item.strip():
            continue
        key, sep, name = item.partition("=")
        try:
            names[int(key)] = name
        except ValueError:
            raise click.BadParameter(f"{item!r} is not VALUE=NAME, e.g. 1=NET,2=ED,3=ET") from None
        if not sep or not name:
            raise click.BadParameter(f"{item!r} is not VALUE=NAME, e.g. 1=NET,2=ED,3=ET")
    return names


def _parse_background(ctx, param, value):
    if value in ("model", "case"):
        return value
    try:
        return int(value)
    except ValueError:
        raise click.BadParameter(f"{value!r}: give 'model', 'case' or a codeword index") from None


@click.command("explain", short_help="Responsible regions of chosen codewords (feature ablation), per case or per cohort.")
@click.argument("params", type=click.Path(dir_okay=False))
@click.argument("image", type=click.Path(), required=False)
@click.argument("mask", type=click.Path(), required=False)
@click.option("--manifest", type=click.Path(dir_okay=False), default=None, help="Cohort mode: every case of this manifest (instead of IMAGE MASK).")
@click.option("-m", "--modality", "modalities", multiple=True, metavar="NAME=PATH", help="Add a named modality (repeatable), e.g. -m t1=t1.nii.gz.")
@click.option("--codewords", required=True, callback=_parse_codewords, help="Codeword indices to ablate, comma-separated, e.g. 17,230.")
@click.option("--labels", "labels", type=click.Path(dir_okay=False), default=None, help="One case: a label map (e.g. BraTS seg.nii.gz) for descriptive per-label statistics.")
@click.option("--label-names", callback=_parse_label_names, default="", help="Names of label values, e.g. 1=NET,2=ED,3=ET.")
@click.option("--samples", type=click.Choice(["voxel", "slice"]), default="voxel", show_default=True, help="One case with --labels: samples of the descriptive tests.")
@click.option("--statistic", type=click.Choice(["sum", "mean"]), default="sum", show_default=True, help="Cohort mode: per patient and region, the sum (paper) or the per-voxel mean of the response.")
@click.option("--outside/--no-outside", default=False, show_default=True, help="Cohort mode: add the foreground outside the mask as a region.")
@click.option("--correction", type=click.Choice(["holm", "fdr_bh", "bonferroni", "none"]), default="holm", show_default=True, help="Cohort mode: correction of Dunn's pairwise p-values.")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=1, show_default=True, help="Cohort mode: parallel worker processes.")
@click.option("--background", callback=_parse_background, default="model", show_default=True, help="Replacement codeword: 'model' (the bundle's recorded background codeword), 'case' or an index.")
@click.option("--overlay-on", default=None, help="One case: modality to draw the overlays on (default: IMAGE).")
@click.option("--label", type=int, default=1, show_default=True, help="One case: label value of the region of interest in MASK (drawn as a contour).")
@click.option("--slices", "n_slices", type=int, default=3, show_default=True, help="One case: number of single-slice overlays (slices with most response).")
@click.option("-o", "--out-dir", required=True, type=click.Path(file_okay=False), help="Output folder.")
@verbosity_options
@report_errors
def command(params, image, mask, manifest, modalities, codewords, labels, label_names, samples, statistic, outside, correction, jobs, background, overlay_on, label, n_slices, out_dir, verbose, quiet):
    """Responsible regions of CODEWORDS of the vqhist model in PARAMS.

    One case (IMAGE MASK): each chosen codeword is replaced by the background codeword in the quantized
    latent; the decoder's logits of the original and ablated latents are compared (per-pixel L1 summed
    over classes). Writes response.nii.gz (input geometry), PNG overlays, summary.csv and, with --labels,
    descriptive per-label tables. IMAGE is the modality named 'Image'.

    Cohort (--manifest): per patient and mask label, the summed response of the codewords (ablated
    together); Kruskal-Wallis and Dunn's test across patients. Writes per_patient.csv, regions.csv, dunn.csv.

    \b
      deepradiomics explain params/deep.yaml flair.nii.gz mask.nii.gz -m t1=t1.nii.gz \\
          -m t1ce=t1ce.nii.gz --codewords 17,230 -o explain_out/
      deepradiomics explain params/deep.yaml --manifest cases.csv --codewords 17 --outside -o cohort/
    """
    from pathlib import Path

    from deepradiomics.case import MAIN_IMAGE, Case
    from deepradiomics.io import Output, check_writable_folder

    from .explain import explain_codewords, explain_cohort, vqhist_class

    setup_logging(verbose, quiet)
    if manifest is None and (image is None or mask is None):
        raise click.UsageError("give IMAGE and MASK for one case, or --manifest for a cohort")
    if manifest is not None and (image is not None or mask is not None):
        raise click.UsageError("give either IMAGE and MASK or --manifest, not both")
    check_writable_folder(out_dir, f"--out-dir '{out_dir}'")
    vq = vqhist_class(params)
    inputs = [*params_inputs(params, load_extractor(params)), ("MASK", mask), ("--labels", labels)]
    if manifest is not None:
        read_cohort(manifest, "--manifest")
        inputs += manifest_inputs(manifest)
    else:
        inputs += [("IMAGE", image), *((f"modality '{k}'", v) for k, v in parse_modalities(modalities).items())]
    check_outputs([Output("--out-dir", out_dir, EXPLAIN_WRITES)], inputs)
    if manifest is not None:
        cohort = explain_cohort(manifest, vq, codewords, label_names=label_names or None, include_outside=outside, statistic=statistic, correction=correction, background=background, jobs=jobs)
        out = cohort.write(out_dir)
        for note in cohort.notes:
            click.echo(f"Note: {note}", err=True)
        click.echo(cohort.summary.to_csv(index=False), nl=False)
        click.echo(f"Kruskal-Wallis across regions (one value per patient): H = {cohort.kruskal['statistic']:.4g}, p = {cohort.kruskal['p_value']:.3g}", err=True)
        click.echo(f"wrote {out}", err=True)
        return
    case = Case({MAIN_IMAGE: image, **parse_modalities(modalities)}, mask, label=label, case_id=Path(image).name.split(".")[0])
    result = explain_codewords(case, vq, codewords, labels=labels, label_names=label_names or None, samples=samples, background=background)
    out = result.write(out_dir, overlay_on=overlay_on, n_slices=n_slices)
    for note in result.notes:
        click.echo(f"Note: {note}", err=True)
    click.echo(result.summary.to_csv(index=False), nl=False)
    if result.kruskal is not None:
        click.echo(f"Kruskal-Wallis across labels (descriptive, {samples}s as samples): H = {result.kruskal['statistic']:.4g}, p = {result.kruskal['p_value']:.3g}", err=True)
    click.echo(f"wrote {out}", err=True)
