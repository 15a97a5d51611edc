"""Parity of the classical classes with PyRadiomics' own reference values.

For every configuration column of ``baseline/baseline_<class>.csv`` (PyRadiomics' ``data/baseline``,
shipped in ``../shared/data/pyradiomics``) and every class firstorder, shape, glcm, glrlm, glszm, gldm,
ngtdm, the features are computed through :class:`deepradiomics.Extractor` and compared with the
baseline to a relative 1e-3. One test per (class, configuration), e.g. ``test_class_matches_baseline
[glcm-brain1_FBN]``, so a failure names the class and the configuration and lists every feature that
is off.

How a baseline column becomes extractor parameters
--------------------------------------------------
PyRadiomics' own baseline test (``tests/testUtils.py``, ``PyRadiomicsBaseline.getTestConfig``) reads
three rows of each column and nothing else:

- ``diagnostics_Configuration_TestCase``: the image (``<case>_image.nrrd`` / ``<case>_label.nrrd``);
- ``diagnostics_Configuration_Settings``: a Python dict literal (``ast.literal_eval``), the ``setting``;
- ``diagnostics_Configuration_EnabledImageTypes``: the ``imageType`` mapping (``{'Original': {}}``).

PyRadiomics' test then preprocesses by hand (resample, ``checkMask``, ``cropToTumorMask``) and builds
each feature class directly. Here the settings go through deepradiomics' params validation and the
whole ``RadiomicsFeatureExtractor.execute`` pipeline (normalisation, resampling, mask correction,
resegmentation, cropping), which is what users run, and the values still agree to ~1e-12 except where
the baseline itself predates a PyRadiomics change (see *Tolerance*).

Settings keys dropped: those PyRadiomics 3.0.1's parameter schema (``paramSchema.yaml``) does not
list under ``setting``; such keys would be provenance, not parameters, and deepradiomics rejects them
by design. In the current baseline there are none: all 21 keys that occur (``additionalInfo``,
``binCount``, ``binWidth``, ``distances``, ``force2D``, ``force2Ddimension``, ``gldm_a``,
``interpolator``, ``label``, ``minimumROIDimensions``, ``minimumROISize``, ``normalize``,
``normalizeScale``, ``padDistance``, ``preCrop``, ``removeOutliers``, ``resampledPixelSpacing``,
``resegmentMode``, ``resegmentRange``, ``voxelArrayShift``, ``weightingNorm``) are valid 3.0.1 settings,
``None`` values included, and are passed unchanged. The summary printed at the end lists any key
dropped, so a future baseline that adds one is visible.

Configurations whose image is not in the folder (``lung2``: PyRadiomics downloads it on demand, it is
not shipped here) are reported as skipped.

Tolerance
---------
``|value - baseline| / max(|baseline|, ABS_FLOOR) <= 1e-3`` with ``ABS_FLOOR = 1e-9``. The floor is
for values that are zero up to round-off: the ``*_flatRegion`` configurations (a single grey level)
give entropies of ``-3.2e-16`` and several exact zeros; the smallest genuinely non-zero baseline value
is 1.4e-6 (glszm SmallAreaEmphasis, brain1_flatRegion), well above the floor, so every real value is
still held to a relative 1e-3. The largest difference is brain1's default configuration's mesh-based
shape features (SurfaceVolumeRatio 9.1e-4, Sphericity 8.7e-4, SurfaceArea 7.9e-4, MeshVolume 1.2e-4):
that baseline column was written by PyRadiomics 2.0.1 (its ``diagnostics_Versions_PyRadiomics``) and
3.0.1's marching cubes differs slightly on that mask; PyRadiomics' own test allows 3 %.

Each configuration is extracted once (a session-scoped cache) with all the classes that share it:
the settings of one configuration column are identical in every class's baseline file
(``test_baseline_settings_shared_across_classes``). Runtime: ~20 s on one core for 32 configurations.
Run with ``pytest -s tests/test_parity.py`` to see the summary (compared values, worst difference).
"""

from __future__ import annotations

import ast
import csv
from dataclasses import dataclass, field
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
PYRADIOMICS_DATA = DATA / "pyradiomics"
BASELINE_DIR = PYRADIOMICS_DATA / "baseline"
CLASSES = ("firstorder", "shape", "glcm", "glrlm", "glszm", "gldm", "ngtdm")
RELATIVE_TOLERANCE = 1e-3
ABS_FLOOR = 1e-9  # denominator floor for values that are zero up to round-off (see module docstring)

TEST_CASE_ROW = "diagnostics_Configuration_TestCase"
SETTINGS_ROW = "diagnostics_Configuration_Settings"
IMAGE_TYPES_ROW = "diagnostics_Configuration_EnabledImageTypes"
#: Provenance rows whose value must match the extractor's: the same input data.
HASH_ROWS = ("diagnostics_Image-original_Hash", "diagnostics_Mask-original_Hash")


@dataclass(frozen=True)
class Configuration:
    """One column of one class's baseline file."""

    feature_class: str
    name: str  # the column, e.g. "brain1_FBN"
    test_case: str  # the image, e.g. "brain1"
    settings_text: str
    image_types_text: str
    expected: dict = field(hash=False, compare=False)  # feature name -> baseline value (text)
    provenance: dict = field(hash=False, compare=False)  # diagnostics_* rows

    @property
    def key(self) -> tuple[str, str, str]:
        """What an extraction depends on; configurations with equal keys share one extraction."""
        return (self.test_case, self.settings_text, self.image_types_text)


def read_baseline(feature_class: str) -> list[Configuration]:
    """All configuration columns of ``baseline_<feature_class>.csv``."""
    with open(BASELINE_DIR / f"baseline_{feature_class}.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    header, body = rows[0], rows[1:]
    configurations = []
    for index, column in enumerate(header[1:], start=1):
        values = {row[0]: row[index] for row in body}
        configurations.append(
            Configuration(
                feature_class=feature_class,
                name=column,
                test_case=values[TEST_CASE_ROW],
                settings_text=values[SETTINGS_ROW],
                image_types_text=values[IMAGE_TYPES_ROW],
                expected={k: v for k, v in values.items() if not k.startswith("diagnostics_")},
                provenance={k: v for k, v in values.items() if k.startswith("diagnostics_")},
            )
        )
    return configurations


def image_paths(test_case: str) -> tuple[Path, Path]:
    return PYRADIOMICS_DATA / f"{test_case}_image.nrrd", PYRADIOMICS_DATA / f"{test_case}_label.nrrd"


def collect_configurations() -> list:
    """pytest params, one per (class, configuration); skipped ones carry their reason."""
    if not BASELINE_DIR.is_dir():
        reason = f"PyRadiomics baseline not found at {BASELINE_DIR} (the shared data folder sits beside the repository)"
        return [pytest.param(None, id="no-baseline-data", marks=pytest.mark.skip(reason=reason))]
    params = []
    for feature_class in CLASSES:
        for configuration in read_baseline(feature_class):
            marks = []
            image, mask = image_paths(configuration.test_case)
            if not (image.is_file() and mask.is_file()):
                reason = f"image of test case '{configuration.test_case}' is not in {PYRADIOMICS_DATA} (not shipped)"
                marks.append(pytest.mark.skip(reason=reason))
            params.append(pytest.param(configuration, id=f"{feature_class}-{configuration.name}", marks=marks))
    return params


CONFIGURATIONS = collect_configurations()


def valid_setting_keys() -> set[str]:
    """Keys of ``setting`` in PyRadiomics' own parameter schema."""
    import radiomics
    import yaml

    schema_file, _ = radiomics.getParameterValidationFiles()
    with open(schema_file) as handle:
        return set(yaml.safe_load(handle)["mapping"]["setting"]["mapping"])


def relative_difference(value: float, expected: float) -> float:
    return abs(value - expected) / max(abs(expected), ABS_FLOOR)


@dataclass
class ParityReport:
    """What the session compared; printed at the end (``pytest -s`` shows it)."""

    compared: int = 0
    worst: tuple = (0.0, "", "", float("nan"), float("nan"))  # (difference, configuration, feature, value, baseline)
    extractions: int = 0
    dropped_keys: set = field(default_factory=set)

    def add(self, configuration: str, feature: str, value: float, expected: float) -> float:
        difference = relative_difference(value, expected)
        self.compared += 1
        if difference > self.worst[0]:
            self.worst = (difference, configuration, feature, value, expected)
        return difference

    def summary(self) -> str:
        difference, configuration, feature, value, expected = self.worst
        dropped = ", ".join(sorted(self.dropped_keys)) or "none"
        return (
            f"parity with PyRadiomics' baseline: {self.compared} values compared in {self.extractions} extractions; "
            f"worst relative difference {difference:.3g} ({configuration}: {feature} = {value!r}, baseline {expected!r}); "
            f"setting keys dropped: {dropped}"
        )


pytestmark = pytest.mark.usefixtures("quiet_pyradiomics")


@pytest.fixture(scope="session")
def parity_report():
    report = ParityReport()
    yield report
    if report.compared:
        print("\n" + report.summary())


@pytest.fixture(scope="session")
def extract(parity_report):
    """``extract(configuration) -> row``: one Extractor run per (image, settings, image types), cached.

    The run computes every class whose baseline has the same key, so each configuration is extracted
    once for all seven classes.
    """
    from deepradiomics import Extractor

    by_key: dict[tuple, list[str]] = {}
    for param in CONFIGURATIONS:
        configuration = param.values[0]
        if configuration is not None:
            by_key.setdefault(configuration.key, []).append(configuration.feature_class)
    valid = valid_setting_keys()
    cache: dict[tuple, object] = {}

    def run(configuration: Configuration):
        if configuration.key not in cache:
            settings = ast.literal_eval(configuration.settings_text)
            dropped = set(settings) - valid
            parity_report.dropped_keys |= dropped
            params = {
                "setting": {k: v for k, v in settings.items() if k not in dropped},
                "imageType": ast.literal_eval(configuration.image_types_text),
                "featureClass": {name: [] for name in by_key[configuration.key]},
            }
            image, mask = image_paths(configuration.test_case)
            cache[configuration.key] = Extractor.from_dict(params).execute(image, mask, case_id=configuration.name)
            parity_report.extractions += 1
        return cache[configuration.key]

    return run


@pytest.mark.parametrize("configuration", CONFIGURATIONS)
def test_class_matches_baseline(configuration: Configuration, extract, parity_report):
    row = extract(configuration)
    for key in HASH_ROWS:
        if configuration.provenance.get(key):
            assert row.get(key) == configuration.provenance[key], (
                f"{key} differs from the baseline's: {configuration.test_case}'s files are not the ones the baseline was made from"
            )
    prefix = "original_" + configuration.feature_class + "_"
    assert configuration.expected, f"baseline column {configuration.name} of {configuration.feature_class} holds no features"
    missing = [name for name in configuration.expected if name not in row.index]
    assert not missing, f"features in the baseline but not computed by deepradiomics: {missing}"
    failures = []
    for name, text in configuration.expected.items():
        assert name.startswith(prefix), f"unexpected baseline feature {name} in baseline_{configuration.feature_class}.csv"
        value, expected = float(row[name]), float(text)
        difference = parity_report.add(configuration.name, name, value, expected)
        if not difference <= RELATIVE_TOLERANCE:  # NaN fails too
            failures.append(f"{name}: {value!r} vs baseline {expected!r} (relative difference {difference:.3g})")
    assert not failures, (
        f"{len(failures)} of {len(configuration.expected)} features differ by more than {RELATIVE_TOLERANCE}:\n"
        + "\n".join(failures)
    )


def test_baseline_settings_shared_across_classes():
    """A configuration column has the same image, settings and image types in every class's file.

    This is what lets one extraction per configuration serve all seven classes (the cache above keys
    on the settings, so it stays correct if this ever changes, only slower).
    """
    if not BASELINE_DIR.is_dir():
        pytest.skip(f"PyRadiomics baseline not found at {BASELINE_DIR}")
    keys: dict[str, set] = {}
    for feature_class in CLASSES:
        for configuration in read_baseline(feature_class):
            keys.setdefault(configuration.name, set()).add(configuration.key)
    differing = sorted(name for name, found in keys.items() if len(found) > 1)
    assert not differing, f"configurations whose settings differ between classes: {differing}"
