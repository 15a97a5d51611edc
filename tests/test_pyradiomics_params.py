"""PyRadiomics 3.0.1's own example params files, unchanged, through every entry point, against PyRadiomics.

``tests/data/pyradiomics_settings/`` holds the eight files of ``examples/exampleSettings`` of PyRadiomics
v3.0.1 byte for byte (see its README; ``test_vendored_files_are_pyradiomics_3_0_1s`` checks their sha256).
Each file is read as PyRadiomics reads it (YAML 1.2: ``initValue: nan`` and ``1e-4`` as PyRadiomics means
them) and extracted, in feature mode and in voxel mode, through

- ``deepradiomics.compat.RadiomicsFeatureExtractor`` (the drop-in): the result must equal PyRadiomics'
  own ``radiomics.featureextractor.RadiomicsFeatureExtractor`` with the same file, key for key, type for
  type, bit for bit (diagnostics included);
- ``deepradiomics extract`` and ``deepradiomics batch`` (click's CliRunner): every feature PyRadiomics
  computes is a column, in PyRadiomics' order, with PyRadiomics' value to the bit (maps: the same geometry
  and voxels, on PyRadiomics' own grid, ``--map-grid native``).

The case of each file is the one its intent suits (``USES``): ``exampleCT`` on lung1 (CT, HU), the MR files
on brain1 (6.5 mm slices: ``exampleMR_5mm``, ``exampleMR_NoResampling``) or breast1 (2.1 mm slices:
``exampleMR_3mm``), ``Params``/``exampleVoxel``/``example_allShape`` on brain1 as PyRadiomics' own
``helloRadiomics.py``/``helloVoxel.py`` do, and ``MR_2D_extraction`` (``shape2D``, which PyRadiomics computes
only for a one-slice ROI) on brain1's largest axial slice of the ROI.

Feature mode runs every file unchanged on the whole ROI (one full extraction per file and entry point).
Voxel mode runs ``exampleVoxel.yaml`` unchanged (its own ``voxelSetting``: kernel radius 2, masked kernel,
``initValue: nan``) on brain1 as ``helloVoxel.py`` does, on a 3 x 11 x 11 part of the ROI (260 voxels; the
whole ROI's 4137 took ~10 s more, for one map); every other file is run unchanged but for a small
kernel (``kernelRadius`` 1: keyword argument for PyRadiomics and compat, ``-s`` for the CLI) on a small real
part of its ROI (``USES[...].voxel_part``), which keeps the 1,100+ maps that a file with LoG and wavelet
images gives to seconds. ``example_allShape`` names shape only, which PyRadiomics does not
compute voxel by voxel: there the test asserts that no map comes out anywhere, as in PyRadiomics.

NaN: ``voxelSetting.initValue`` (the value of voxels without a feature value, never computed with) takes
NaN as PyRadiomics does (``nan`` text, ``.nan``, ``NaN``); NaN or infinity wherever a value is computed with
stays refused, by name, in ``load_params``, compat and the CLI.

Runtime (2 shared cores, loaded): feature mode ~40 s, voxel mode ~80 s, of which ``exampleCT`` (1,218
features of 14 images) is ~20 s and ~30 s, marked slow.
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tests.conftest import require_data
from tests.test_compat import assert_same_result, assert_same_value

pytestmark = pytest.mark.usefixtures("quiet_pyradiomics")
PYRADIOMICS_LOG_LEVEL = logging.CRITICAL  # PyRadiomics logs every voxel batch where a feature fails as an error

SETTINGS_DIR = Path(__file__).resolve().parent / "data" / "pyradiomics_settings"
#: sha256 of each vendored file: those of examples/exampleSettings in PyPI's pyradiomics-3.0.1.tar.gz, byte for byte
SHA256 = {
    "MR_2D_extraction.yaml": "9333a0d1c67f35f61ff857ac3b79d0021a9bae632a77ac9ee8f323c00f67b41f",
    "Params.yaml": "f451ec8c30f812e684630c4690a781e361c75f258fd7e37e2d46e65a56467d55",
    "exampleCT.yaml": "2ee6aa75dc25a32796197dc13c3674253451787278789dafe3a5e79f5ef8be53",
    "exampleMR_3mm.yaml": "774ede14be52863ed8299217a1097a117d1d68f773f9b84ff8dd58865ae28117",
    "exampleMR_5mm.yaml": "96037a9405e37be0ddf695bce5195fedb8b2b891538d3d3abb6ddb3960ba563e",
    "exampleMR_NoResampling.yaml": "d8716ae3bd8ddd4c5d5d5eacb79ccbf79fa23d1a7f2b78be6ee1e2516595661c",
    "exampleVoxel.yaml": "3c50d4acf4ca0bf85a7973242fd9e5183f3ca6b1a6b131a630e4c9901d0b571c",
    "example_allShape.yaml": "9771c3a1fb3bbd3e82247ed07348dfe6c49c66f96c46d5f4a7b7fb23c4c37728",
}


@dataclass(frozen=True)
class Use:
    """How a file is run: the PyRadiomics test case and the ROIs of its two modes."""

    case: str
    #: "whole": the case's ROI; "slice": its largest axial slice only (a 2D ROI, for shape2D)
    roi: str = "whole"
    #: voxel mode: half-widths (z, y, x) in voxels of the box around the ROI's median voxel kept; None: the ROI
    voxel_part: tuple[int, int, int] | None = (1, 1, 1)
    #: voxel mode: kernelRadius given on top of the file (None: the file's own voxelSetting)
    kernel_radius: int | None = 1
    slow: bool = False


USES = {
    "exampleCT.yaml": Use("lung1", voxel_part=(0, 2, 2), slow=True),
    "Params.yaml": Use("brain1"),
    "exampleMR_3mm.yaml": Use("breast1", voxel_part=(2, 2, 2)),
    "exampleMR_5mm.yaml": Use("brain1", voxel_part=(1, 3, 3)),  # 3 mm resampling: a wider part keeps a few voxels
    "exampleMR_NoResampling.yaml": Use("brain1"),
    "MR_2D_extraction.yaml": Use("brain1", roi="slice", voxel_part=(0, 3, 3)),
    "exampleVoxel.yaml": Use("brain1", voxel_part=(1, 5, 5), kernel_radius=None),  # its own kernel: radius 2
    "example_allShape.yaml": Use("brain1"),
}


def _by_file(slow_too: bool = True):
    return [pytest.param(name, marks=[pytest.mark.slow] if use.slow else [], id=name.removesuffix(".yaml")) for name, use in USES.items()]


# -- inputs -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """``{file name: (image path, mask path for feature mode, mask path for voxel mode)}``, real data only.

    Masks other than a case's own are written once to a temporary folder, on the image's grid."""
    import SimpleITK as sitk

    folder = require_data("pyradiomics")
    out = tmp_path_factory.mktemp("rois")
    paths = {}
    for name, use in USES.items():
        image, mask = folder / f"{use.case}_image.nrrd", folder / f"{use.case}_label.nrrd"
        reference = sitk.ReadImage(str(mask))
        labels = sitk.GetArrayFromImage(reference)
        feature_mask = mask
        if use.roi == "slice":
            labels = _largest_slice(labels)
            feature_mask = _write_like(reference, labels, out / f"{name}-slice.nrrd")
        voxel_mask = feature_mask
        if use.voxel_part is not None:
            voxel_mask = _write_like(reference, _part(labels, use.voxel_part), out / f"{name}-part.nrrd")
        paths[name] = (str(image), str(feature_mask), str(voxel_mask))
    return paths


def _largest_slice(labels: np.ndarray) -> np.ndarray:
    z = int((labels == 1).sum(axis=(1, 2)).argmax())
    kept = np.zeros_like(labels)
    kept[z] = labels[z]
    return kept


def _part(labels: np.ndarray, half: tuple[int, int, int]) -> np.ndarray:
    centre = [int(np.median(axis)) for axis in np.nonzero(labels == 1)]
    box = tuple(slice(c - h, c + h + 1) for c, h in zip(centre, half))
    kept = np.zeros_like(labels)
    kept[box] = labels[box]
    assert (kept == 1).sum() >= 18, "the voxel-mode part keeps too few ROI voxels"
    return kept


def _write_like(reference, array: np.ndarray, path: Path) -> Path:
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(array)
    image.CopyInformation(reference)
    sitk.WriteImage(image, str(path))
    return path


def _pyradiomics(name: str, **settings):
    from radiomics.featureextractor import RadiomicsFeatureExtractor

    return RadiomicsFeatureExtractor(str(SETTINGS_DIR / name), **settings)


def _compat(name: str, **settings):
    from deepradiomics.compat import RadiomicsFeatureExtractor

    return RadiomicsFeatureExtractor(str(SETTINGS_DIR / name), **settings)


def _cli(*args) -> None:
    from deepradiomics.cli import main

    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, (args[:2], result.output, result.exception)


def _manifest(path: Path, image: str, mask: str) -> Path:
    path.write_text(f"ID,Image,Mask\ncase,{image},{mask}\n")
    return path


def _features(result) -> list[str]:
    return [key for key in result if not key.startswith("diagnostics_")]


# -- the files ----------------------------------------------------------------------------------------
def test_vendored_files_are_pyradiomics_3_0_1s():
    files = sorted(path.name for path in SETTINGS_DIR.glob("*.yaml"))
    assert files == sorted(USES), "every vendored file needs a Use (a case and ROIs) in USES"
    changed = {name: hashlib.sha256((SETTINGS_DIR / name).read_bytes()).hexdigest() for name in files}
    assert changed == SHA256, "a vendored file differs from PyRadiomics 3.0.1's: restore it (see the folder's README)"


@pytest.mark.parametrize("name", _by_file())
def test_file_loads_unchanged_and_gives_pyradiomics_features(name, inputs, tmp_path):
    from deepradiomics import io

    image, mask, _ = inputs[name]
    expected = _pyradiomics(name).execute(image, mask)
    assert_same_result(expected, _compat(name).execute(image, mask), f"compat, {name}")
    features = _features(expected)
    assert features, f"{name}: PyRadiomics computed no feature"
    _cli("extract", SETTINGS_DIR / name, image, mask, "-o", tmp_path / "extract.csv", "-q")
    _cli("batch", SETTINGS_DIR / name, _manifest(tmp_path / "cases.csv", image, mask), "-o", tmp_path / "batch.csv", "--no-progress", "-q")
    for command in ("extract", "batch"):
        row = io.read_table(tmp_path / f"{command}.csv").iloc[0]
        columns = [c for c in row.index if c.startswith(("original", "log-", "wavelet-"))]
        assert columns == features, f"{command}, {name}: the columns are not PyRadiomics' features in its order"
        for feature in features:
            assert_same_value(float(expected[feature]), float(row[feature]), f"{command}, {name}: {feature}")


@pytest.mark.parametrize("name", _by_file())
def test_file_in_voxel_mode_gives_pyradiomics_maps(name, inputs, tmp_path):
    import pandas as pd
    import SimpleITK as sitk

    use = USES[name]
    image, _, mask = inputs[name]
    settings = {} if use.kernel_radius is None else {"kernelRadius": use.kernel_radius}
    overrides = [item for key, value in settings.items() for item in ("-s", f"{key}={value}")]
    expected = _pyradiomics(name, **settings).execute(image, mask, voxelBased=True)
    assert_same_result(expected, _compat(name, **settings).execute(image, mask, voxelBased=True), f"compat voxel mode, {name}")
    maps = _features(expected)
    if name == "example_allShape.yaml":
        assert maps == []  # shape only: PyRadiomics computes no feature voxel by voxel
    else:
        assert len(maps) >= 1 and all(isinstance(expected[key], sitk.Image) for key in maps)
    grid = ("--map-grid", "native")  # PyRadiomics' own grid (the ROI's padded box), to compare map for map
    _cli("extract", SETTINGS_DIR / name, image, mask, "--mode", "voxel", *grid, *overrides, "-o", tmp_path / "extract", "-q")
    manifest = _manifest(tmp_path / "cases.csv", image, mask)
    _cli("batch", SETTINGS_DIR / name, manifest, "--mode", "voxel", *grid, *overrides, "--maps-dir", tmp_path / "maps", "-o", tmp_path / "batch.csv", "--no-progress", "-q")
    for command, table in (("extract", tmp_path / "extract" / "maps.csv"), ("batch", tmp_path / "batch.csv")):
        row = pd.read_csv(table, dtype=str).iloc[0]
        columns = [c for c in row.index if c.startswith(("original", "log-", "wavelet-"))]
        assert columns == maps, f"{command} voxel mode, {name}: the maps are not PyRadiomics' in its order"
        for key in maps:
            got = sitk.ReadImage(row[key], expected[key].GetPixelID())  # read as PyRadiomics' pixel type
            assert_same_value(expected[key], got, f"{command} voxel mode, {name}: {key}")


# -- NaN where PyRadiomics takes it, and nowhere else -----------------------------------------------------
VOXEL_TEXT = (SETTINGS_DIR / "exampleVoxel.yaml").read_text() if (SETTINGS_DIR / "exampleVoxel.yaml").exists() else ""


@pytest.mark.parametrize("spelling", ["nan", ".nan", "NaN", ".NaN", ".NAN"])
def test_init_value_takes_nan_as_pyradiomics_does(spelling, tmp_path):
    from deepradiomics.params import load_params

    path = tmp_path / "voxel.yaml"
    path.write_text(VOXEL_TEXT.replace("initValue: nan", f"initValue: {spelling}"))
    assert f"initValue: {spelling}\n" in path.read_text()
    value = load_params(path).voxel_setting["initValue"]
    assert isinstance(value, float) and math.isnan(value)
    pyradiomics_value = _pyradiomics_from(path).settings["initValue"]  # PyRadiomics keeps the text, numpy reads it as NaN
    assert math.isnan(float(pyradiomics_value))
    from deepradiomics.compat import RadiomicsFeatureExtractor

    assert math.isnan(float(RadiomicsFeatureExtractor(str(path)).settings["initValue"]))


def _pyradiomics_from(path: Path):
    from radiomics.featureextractor import RadiomicsFeatureExtractor

    return RadiomicsFeatureExtractor(str(path))


@pytest.mark.parametrize(
    "line, key",
    [
        ("binWidth: nan", "setting.binWidth"),
        ("binWidth: .nan", "setting.binWidth"),
        ("binWidth: .inf", "setting.binWidth"),
        ("geometryTolerance: .nan", "setting.geometryTolerance"),
        ("resampledPixelSpacing: [1, .nan, 1]", "setting.resampledPixelSpacing"),
    ],
)
def test_nan_is_refused_where_it_would_be_computed_with(line, key, tmp_path, lgg_case):
    from deepradiomics.cli import main
    from deepradiomics.compat import RadiomicsFeatureExtractor
    from deepradiomics.errors import ParamsError
    from deepradiomics.params import load_params

    path = tmp_path / "bad.yaml"
    path.write_text(VOXEL_TEXT.replace("binWidth: 25", line))
    assert line in path.read_text()
    with pytest.raises(ParamsError, match=key) as caught:
        load_params(path)
    assert "finite" in str(caught.value) and "bad.yaml" in str(caught.value)
    with pytest.raises(ParamsError, match=key):  # a ParamsSchemaError, as PyRadiomics' pykwalify error
        RadiomicsFeatureExtractor(str(path))
    result = CliRunner().invoke(main, ["extract", str(path), str(lgg_case["flair"]), str(lgg_case["mask"])])
    errors = [text for text in result.stderr.splitlines() if text.startswith("Error:")]
    assert result.exit_code != 0 and len(errors) == 1 and key in errors[0] and "Traceback" not in result.output


@pytest.mark.parametrize("key", ["kernelRadius", "voxelBatch"])
def test_nan_is_refused_in_voxel_settings_that_are_computed_with(key, tmp_path):
    from deepradiomics.errors import ParamsError
    from deepradiomics.params import load_params

    path = tmp_path / "bad.yaml"
    text = VOXEL_TEXT.replace("kernelRadius: 2", "kernelRadius: .nan") if key == "kernelRadius" else VOXEL_TEXT.replace("voxelBatch: 10000", "voxelBatch: nan")
    path.write_text(text)
    with pytest.raises(ParamsError, match=f"voxelSetting.{key}"):
        load_params(path)


def test_yaml_1_2_numbers_load_as_pyradiomics_reads_them(tmp_path, brain1):
    """The issue's case: ``geometryTolerance: 1e-4`` is a number in YAML 1.2 (PyYAML 1.1 read it as text)."""
    from deepradiomics.params import load_params

    path = tmp_path / "tolerance.yaml"
    path.write_text((SETTINGS_DIR / "Params.yaml").read_text().replace("binWidth: 25", "binWidth: 25\n  geometryTolerance: 1e-4"))
    params = load_params(path)
    assert params.setting["geometryTolerance"] == 1e-4 and isinstance(params.setting["geometryTolerance"], float)
