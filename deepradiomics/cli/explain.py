"""``deepradiomics explain``: responsible regions of chosen codewords by feature ablation."""

from __future__ import annotations

import click

from ._common import parse_modalities, report_errors, verbose_option


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


@click.command("explain")
@click.argument("params", type=click.Path(dir_okay=False))
@click.argument("image", type=click.Path())
@click.argument("mask", type=click.Path())
@click.option(
    "-m",
    "--modality",
    "modalities",
    multiple=True,
    metavar="NAME=PATH",
    help="Add a named modality (repeatable), e.g. -m t1=t1.nii.gz.",
)
@click.option(
    "--codewords", required=True, callback=_parse_codewords, help="Codeword indices to ablate, comma-separated, e.g. 17,230."
)
@click.option(
    "--labels",
    "labels",
    type=click.Path(dir_okay=False),
    default=None,
    help="Label map (e.g. BraTS seg.nii.gz) for per-label sums, Kruskal-Wallis and Dunn's test.",
)
@click.option("--label-names", callback=_parse_label_names, default="", help="Names of label values, e.g. 1=NET,2=ED,3=ET.")
@click.option(
    "--samples",
    type=click.Choice(["voxel", "slice"]),
    default="voxel",
    show_default=True,
    help="Samples of the label tests: each voxel's response, or each slice's summed response per label.",
)
@click.option(
    "--background",
    callback=_parse_background,
    default="model",
    show_default=True,
    help="Replacement codeword: 'model' (mode of an all-zero slice's codes), 'case' (mode of the case's all-zero input blocks) or an index.",
)
@click.option("--overlay-on", default=None, help="Modality to draw the overlays on (default: IMAGE).")
@click.option(
    "--label", type=int, default=1, show_default=True, help="Label value of the region of interest in MASK (drawn as a contour)."
)
@click.option(
    "--slices",
    "n_slices",
    type=int,
    default=3,
    show_default=True,
    help="Number of single-slice overlays (slices with most response).",
)
@click.option("-o", "--out-dir", required=True, type=click.Path(file_okay=False), help="Output folder.")
@verbose_option
@report_errors
def command(
    params,
    image,
    mask,
    modalities,
    codewords,
    labels,
    label_names,
    samples,
    background,
    overlay_on,
    label,
    n_slices,
    out_dir,
    verbose,
):
    """Responsible regions of CODEWORDS of the vqhist model in PARAMS, on the case IMAGE + MASK.

    Each chosen codeword is replaced by the background codeword in the quantized latent; the decoder's
    logits of the original and ablated latents are compared (per-pixel L1 summed over classes). Writes
    response.nii.gz (input geometry), PNG overlays, summary.csv and, with --labels, labels.csv and
    dunn.csv. IMAGE is the modality named 'Image'; the vqhist modalities come from PARAMS. Example:

    \b
      deepradiomics explain params/deep.yaml flair.nii.gz mask.nii.gz -m t1=t1.nii.gz \\
          -m t1ce=t1ce.nii.gz --codewords 17,230 -o explain_out/
    """
    import logging
    from pathlib import Path

    from ..case import MAIN_IMAGE, Case
    from ..study.explain import explain_codewords

    logging.basicConfig(
        level={0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG), format="%(levelname)s %(name)s: %(message)s"
    )
    case = Case({MAIN_IMAGE: image, **parse_modalities(modalities)}, mask, label=label, case_id=Path(image).name.split(".")[0])
    result = explain_codewords(
        case, params, codewords, labels=labels, label_names=label_names or None, samples=samples, background=background
    )
    out = result.write(out_dir, overlay_on=overlay_on, n_slices=n_slices)
    for note in result.notes:
        click.echo(f"Note: {note}", err=True)
    click.echo(result.summary.to_csv(index=False), nl=False)
    if result.kruskal is not None:
        click.echo(
            f"Kruskal-Wallis across labels: H = {result.kruskal['statistic']:.4g}, p = {result.kruskal['p_value']:.3g}", err=True
        )
    click.echo(f"wrote {out}", err=True)
