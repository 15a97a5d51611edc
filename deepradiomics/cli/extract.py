"""``deepradiomics extract``: one case -> one row (or, with ``--mode voxel``, one map per feature)."""

from __future__ import annotations

import click

from .common import (
    check_outputs,
    load_extractor,
    params_inputs,
    parse_modalities,
    report_errors,
    setup_logging,
    verbosity_options,
)

#: file stems that name an MR/CT sequence rather than a case (``<case>/flair.nii.gz``): the folder names the case
MODALITY_STEMS = frozenset({"image", "flair", "t1", "t1ce", "t1gd", "t1c", "t2", "t2w", "t1w", "ct", "pet", "adc", "dwi", "mask", "seg", "label"})


def default_case_id(image, modalities=()) -> str:
    """The row's ID: the image file's stem, or its folder's name when the stem is a modality's name."""
    from pathlib import Path

    path = Path(image)
    stem = path.name.split(".")[0]
    if stem.lower() in MODALITY_STEMS or stem in set(modalities):
        folder = path.resolve().parent.name
        return folder or stem
    return stem


@click.command("extract")
@click.argument("params", type=click.Path(dir_okay=False))
@click.argument("image", type=click.Path())
@click.argument("mask", type=click.Path())
@click.option("-m", "--modality", "modalities", multiple=True, metavar="NAME=PATH", help="Add a named modality for deep classes (repeatable), e.g. -m t1=t1.nii.gz.")
@click.option("--label", type=str, default=None, help="Label value of the region of interest (default: params setting.label, else 1).")
@click.option("-s", "--setting", "settings", multiple=True, metavar="KEY=VALUE", help="Override a params setting (repeatable), e.g. -s binWidth=10 or -s kernelRadius=2.")
@click.option("--id", "case_id", default=None, help="Case ID for the row index (default: the image file name, or its folder's name when the file is named after a modality, e.g. flair.nii.gz).")
@click.option("-o", "--output", type=click.Path(), default=None, help="Output .csv, .json or .parquet (default: CSV on stdout); with --mode voxel, the folder for the maps.")
@click.option("--mode", type=click.Choice(["features", "voxel"]), default="features", show_default=True, help="One value per feature, or one map per feature (PyRadiomics' voxel-based extraction, plus maps of deep classes).")
@click.option("--layout", type=click.Choice(["deepradiomics", "pyradiomics"]), default="deepradiomics", show_default=True, help="pyradiomics: the columns PyRadiomics' CLI writes (Image, Mask, its keys in its order), no index; a failed case is written with Image and Mask only and exits 0, as PyRadiomics does.")
@click.option("--map-format", type=click.Choice(["nrrd", "nii.gz"]), default="nrrd", show_default=True, help="--mode voxel: file format of the maps.")
@click.option("--map-grid", type=click.Choice(["image", "native"]), default="image", show_default=True, help="--mode voxel: maps on the image's grid, or on PyRadiomics' own (the ROI's padded bounding box).")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=1, show_default=True, help="--mode voxel: worker processes for the PyRadiomics maps (identical values).")
@verbosity_options
@report_errors
def command(params, image, mask, modalities, label, settings, case_id, output, mode, layout, map_format, map_grid, jobs, verbose, quiet):
    """Extract the features named in PARAMS from IMAGE within MASK.

    \b
    IMAGE is the image the classical (PyRadiomics) classes read; IMAGE and MASK may be files or
    DICOM series folders. Examples:
      deepradiomics extract params/combined.yaml flair.nii.gz mask.nii.gz -m t1=t1.nii.gz -m t1ce=t1ce.nii.gz
      deepradiomics extract params/classical.yaml image.nrrd label.nrrd --mode voxel -s kernelRadius=1 -o maps/
    """
    import logging
    from pathlib import Path

    from ..batch import parse_label
    from ..classical import diagnostic_value
    from ..errors import DeepRadiomicsError, ParamsError
    from ..io import Output, check_output, check_writable_folder, write_table
    from ..voxel import MAP_FORMATS, VoxelOutput

    setup_logging(verbose, quiet)
    if mode == "voxel":
        if output is None:
            raise ParamsError("--mode voxel writes one file per map: give the folder with -o DIR")
        check_writable_folder(output, f"-o '{output}'")
        voxel = VoxelOutput(str(output), map_format, map_grid, jobs)
    else:
        check_output(output)
    named = parse_modalities(modalities)
    extractor = load_extractor(params, settings)
    # voxel mode writes maps.csv and <feature name>.<format> into the folder
    writes = ("maps.csv", f"*_*_*{MAP_FORMATS[map_format]}") if mode == "voxel" else None
    inputs = [*params_inputs(params, extractor), ("IMAGE", image), ("MASK", mask), *((f"modality '{k}'", v) for k, v in named.items())]
    check_outputs([Output("-o", output, writes)], inputs)
    extractor.batch_task(layout=layout).check()  # settings no case can satisfy: refused naming the key, before reading images
    case_id = case_id or default_case_id(image, named)
    value = None if label is None else parse_label(label, "--label")
    case = extractor.make_case(image, mask, named, value, case_id)
    import pandas as pd

    if mode == "voxel":
        row = extractor.maps_row(case, voxel, layout, folder=output)
        table = pd.DataFrame([row], index=pd.Index([case_id], name="ID"))
        write_table(table, Path(output) / "maps.csv", index=layout == "deepradiomics")
        write_table(table, None, index=layout == "deepradiomics")
        return
    if layout == "pyradiomics":
        try:
            result = extractor.compute(case, layout="pyradiomics")
        except DeepRadiomicsError as exc:  # PyRadiomics' CLI logs the failure and writes the case's paths
            logging.getLogger("deepradiomics").error("case '%s' failed: %s", case_id, exc)
            result = {}
        frame = {"Image": str(Path(image).absolute()), "Mask": str(Path(mask).absolute()), **result}
        write_table(pd.DataFrame([frame]), output, index=False)
        return
    row = extractor.execute_case(case).map(diagnostic_value)  # plain values: no numpy repr in a text cell
    table = row.to_frame().T.infer_objects()  # features float64, diagnostics as they are
    table.index.name = "ID"
    write_table(table, output)
