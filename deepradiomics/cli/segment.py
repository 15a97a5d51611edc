"""`deepradiomics segment BUNDLE IMAGE [-m NAME=PATH]... -o mask.nii.gz`: a network's tumour segmentation."""

from __future__ import annotations

import click

from .common import check_outputs, parse_modalities, report_errors, setup_logging, verbosity_options


@click.command("segment", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("bundle")
@click.argument("image", type=click.Path())
@click.option("-m", "--modality", "modalities", multiple=True, metavar="NAME=PATH", help="Another modality the bundle takes (repeatable), e.g. -m t1ce=t1ce.nii.gz.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Label image to write (.nii.gz, .nrrd, ...), on IMAGE's grid.")
@click.option(
    "--allow-empty",
    is_flag=True,
    help="Write the mask even when the network finds no tumour (with a warning); by default that is an error and nothing is written.",
)
@verbosity_options
@report_errors
def command(bundle: str, image: str, modalities, output: str, allow_empty: bool, verbose: int, quiet: bool) -> None:
    """Segment IMAGE (the modality named Image) with the network of BUNDLE and write the labels to -o.

    \b
    BUNDLE is a shipped bundle's name (vq-lgg-cpu, dlr-lgg-cpu) or a folder written by `train`; its
    config.yaml lists the modalities it takes in channel order: give each one other than Image with -m.
    The output copies IMAGE's geometry and holds the mask values the network was trained on (the
    inverse of the bundle's label_map), so it can serve as the MASK of `extract`. When the network
    labels no voxel as tumour, nothing is written and the command exits with status 1 (such a mask
    cannot serve `extract`), unless --allow-empty is given. Example:
      deepradiomics segment dlr-lgg-cpu flair.nii.gz -m t1ce=t1ce.nii.gz -o auto_mask.nii.gz
    """
    import logging
    from pathlib import Path

    import SimpleITK as sitk

    from ..errors import CaseError
    from ..io import Output, check_image_output
    from ..models import load_bundle, resolve_bundle
    from ..training.segment import segment_images

    setup_logging(verbose, quiet)
    check_image_output(output, "-o")  # before the network runs
    images = {"Image": image, **parse_modalities(modalities)}
    inputs = [("BUNDLE", resolve_bundle(bundle)), *((f"image '{name}'", path) for name, path in images.items())]
    check_outputs([Output("-o", output)], inputs)
    log = logging.getLogger("deepradiomics.segment")
    loaded = load_bundle(bundle)
    unused = [name for name in images if name not in loaded.modalities]
    if unused:
        log.warning("bundle '%s' does not take %s (it takes %s): ignored", loaded.name, ", ".join(unused), ", ".join(loaded.modalities))
    labels = segment_images(loaded, images)
    labelled = int((sitk.GetArrayViewFromImage(labels) > 0).sum())
    if labelled == 0:
        if not allow_empty:
            # written, an empty mask would only fail later, in extract (a mask without the label value)
            raise CaseError(
                f"the network of bundle '{loaded.name}' found no tumour in image '{image}' (every voxel labelled 0): nothing written "
                f"to '{output}'; check that the images are the modalities the bundle was trained on, or pass --allow-empty to write the empty mask"
            )
        log.warning("the network of bundle '%s' found no tumour in image '%s': writing an empty mask to %s (--allow-empty)", loaded.name, image, output)
    Path(output).parent.mkdir(parents=True, exist_ok=True)  # check_image_output accepted a folder that can be created
    sitk.WriteImage(labels, str(output), True)
    log.info("wrote %s (%d labelled voxels)", output, labelled)
