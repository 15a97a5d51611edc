"""Registry: entry-point discovery through a fake distribution on sys.path, with nothing installed."""

import sys
import textwrap

import pytest
from click.testing import CliRunner

from deepradiomics.classical import CLASSICAL_CLASS_NAMES
from deepradiomics.errors import ParamsError, PluginError
from deepradiomics.registry import ENTRY_POINT_GROUP, FeatureRegistry, get_registry
from deepradiomics.testing import check_feature_class, synthetic_case

PLUGIN_MODULE = '''
from dataclasses import dataclass
import numpy as np
from deepradiomics.featureclass import FeatureClass

@dataclass(frozen=True)
class Settings:
    power: float = 1.0

class RoiPower(FeatureClass):
    name = "roipower"
    family = "deep"
    Settings = Settings

    def feature_names(self):
        return ["MeanPower"]

    def compute(self, case):
        values = np.asarray(case.array(), dtype=float)[case.mask_array()]
        return {"MeanPower": float(np.mean(np.abs(values) ** self.settings.power))}
'''


@pytest.fixture
def fake_distribution(tmp_path, monkeypatch):
    """A distribution 'fake-plugins' with one good and one broken entry point, only on sys.path."""
    (tmp_path / "fake_plugin_module.py").write_text(PLUGIN_MODULE)
    (tmp_path / "broken_plugin_module.py").write_text("raise ImportError('needs a library that is not installed')\n")
    info = tmp_path / "fake_plugins-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-plugins\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(f"""
        [{ENTRY_POINT_GROUP}]
        roipower = fake_plugin_module:RoiPower
        brokenclass = broken_plugin_module:Broken
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    get_registry.cache_clear()
    yield tmp_path
    get_registry.cache_clear()
    for name in ("fake_plugin_module", "broken_plugin_module"):
        sys.modules.pop(name, None)


def test_classical_classes_are_registered_without_importing_pyradiomics():
    registry = FeatureRegistry()
    for name in CLASSICAL_CLASS_NAMES:
        assert registry.entry(name).family == "classical"
        assert registry.entry(name).source == "pyradiomics"
    assert "vqhist" in registry  # first-party deep class, through the entry point like any plugin


def test_fake_distribution_is_discovered_lazily(fake_distribution):
    registry = FeatureRegistry()
    assert "roipower" in registry and "brokenclass" in registry
    assert "fake_plugin_module" not in sys.modules  # listed, not imported
    entry = registry.entry("roipower")
    assert entry.source == "fake-plugins"
    cls = registry.get("roipower")
    assert cls.family == "deep" and "fake_plugin_module" in sys.modules
    check_feature_class(cls)


def test_broken_plugin_names_its_distribution_and_breaks_nothing_else(fake_distribution):
    registry = FeatureRegistry()
    with pytest.raises(PluginError, match="fake-plugins") as info:
        registry.get("brokenclass")
    assert "not installed" in str(info.value)
    assert registry.get("glcm").family == "classical"
    assert "roipower" in registry.names(family="deep")


def test_params_and_extractor_use_the_plugin(fake_distribution):
    from deepradiomics import Extractor

    extractor = Extractor({"featureClass": {"roipower": {"power": 2.0}}})
    row = extractor.execute_case(synthetic_case())
    assert list(row.index[-1:]) == ["original_roipower_MeanPower"]
    with pytest.raises(ParamsError, match="Did you mean 'power'"):
        Extractor({"featureClass": {"roipower": {"powr": 2.0}}})
    with pytest.raises(ParamsError, match="not of type"):
        Extractor({"featureClass": {"roipower": {"power": "high"}}})


def test_plugins_command_lists_name_family_source(fake_distribution):
    from deepradiomics.cli import main

    result = CliRunner().invoke(main, ["plugins"])
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line.split() for line in result.stdout.splitlines()[1:]}
    assert lines["glcm"][1:] == ["classical", "pyradiomics"]
    assert lines["roipower"][1:] == ["deep", "fake-plugins"]
    assert "brokenclass" in result.stderr and "fake-plugins" in result.stderr


def test_register_rejects_non_feature_classes():
    registry = FeatureRegistry()
    with pytest.raises(PluginError):
        registry.register(type("NotAClass", (), {"name": "x", "family": "deep"}))


@pytest.mark.parametrize("name", ["firstorder", "glcm", "shape"])
def test_classical_classes_pass_the_conformance_check(name):
    check_feature_class(get_registry().get(name))


def test_template_plugin_passes_the_conformance_check():
    from deepradiomics_plugins.template import ModalityMeans

    check_feature_class(ModalityMeans)
    check_feature_class(ModalityMeans, settings={"modalities": ["Image", "t1"]}, case=synthetic_case(modalities=("Image", "t1")))


def test_conformance_check_catches_a_broken_class():
    from deepradiomics.featureclass import FeatureClass

    class Wrong(FeatureClass):
        name = "wrong"

        def feature_names(self):
            return ["A", "B"]

        def compute(self, case):
            return {"B": 1.0, "A": 2.0}

    with pytest.raises(AssertionError, match="differ from feature_names"):
        check_feature_class(Wrong)


def test_template_class_by_entry_point_next_to_pyradiomics_through_the_cli(tmp_path, monkeypatch, lgg_case):
    """plugins/template.py as a third party would ship it: entry point, params file, CLI, its columns."""
    info = tmp_path / "my_features-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-features\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nmodalitymeans = deepradiomics_plugins.template:ModalityMeans\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    get_registry.cache_clear()
    try:
        from deepradiomics.cli import main

        params = tmp_path / "params.yaml"
        params.write_text("featureClass:\n  firstorder: [Mean]\n  modalitymeans: {modalities: [Image, t1]}\n")
        runner = CliRunner()
        listing = runner.invoke(main, ["plugins"])
        assert "modalitymeans" in listing.stdout and "my-features" in listing.stdout and "classical" in listing.stdout
        result = runner.invoke(main, ["extract", str(params), str(lgg_case["flair"]), str(lgg_case["mask"]), "-m", f"t1={lgg_case['t1']}"])
        assert result.exit_code == 0, result.output
        import io

        import pandas as pd

        table = pd.read_csv(io.StringIO(result.stdout), index_col=0)
        header, values = list(table.columns), table.iloc[0]
        assert header[-3:] == ["original_firstorder_Mean", "original_modalitymeans_MeanImage", "original_modalitymeans_Meant1"]
        # hand-crafted but not PyRadiomics': computed by the class itself, equal to PyRadiomics' firstorder Mean
        assert float(values["original_modalitymeans_MeanImage"]) == pytest.approx(float(values["original_firstorder_Mean"]), rel=1e-9)
        with pytest.raises(ParamsError, match="takes a mapping of its settings"):
            from deepradiomics.params import load_params

            load_params({"featureClass": {"modalitymeans": ["Image"]}})
    finally:
        get_registry.cache_clear()
