"""deepradiomics: a plugin-based radiomics toolkit with deep and classical feature classes.

Two installs, both tested (see the README):

- ``make install`` (the development and CI set-up): PyRadiomics 3.0.1, built without build isolation after
  its undeclared build requirements, and the CPU build of torch pinned; then this package with ``[test,dask]``.
- ``pip install '.[pyradiomics]'``, with PyTorch's CPU index as an extra index: the ``pyradiomics`` extra is
  ``pyradiomics-bhklab``, PyRadiomics 3.0.1's code that pip builds on Python 3.11 with numpy 2 (the same
  ``radiomics`` package; PyPI's own pyradiomics 3.1.0 sdist is refused by pip, 3.0.1's fails to build in
  isolation).

PyRadiomics is therefore an extra, not a base requirement: ``make install`` must not pull a second
distribution of the ``radiomics`` package on top of 3.0.1. Without it deepradiomics says, at first use,
what to install (:class:`deepradiomics.errors.PyRadiomicsNotInstalledError`).
"""

from pathlib import Path

from setuptools import find_namespace_packages, find_packages, setup

version = {}
exec(Path("deepradiomics/_version.py").read_text(), version)

setup(
    name="deepradiomics",
    version=version["__version__"],
    description="Deep and classical radiomics features side by side, PyRadiomics-compatible",
    long_description=Path("README.md").read_text(encoding="utf-8") if Path("README.md").exists() else "",
    long_description_content_type="text/markdown",
    license="BSD-3-Clause",
    # the code is BSD-3-Clause; the shipped models and the LGG example case are CC BY-NC-SA 4.0 (derived data)
    license_files=["LICENSE", "deepradiomics/data/LICENSE-DATA.md"],
    python_requires=">=3.10",
    # every package and data folder is listed: the code, the data folders (namespace packages holding only
    # data files), the repository's params/ installed as deepradiomics.data.params, and the plugins
    packages=find_namespace_packages(include=["deepradiomics", "deepradiomics.*"], exclude=["*.__pycache__"])
    + ["deepradiomics.data.params", "deepradiomics_plugins"]
    + [f"deepradiomics_plugins.{name}" for name in find_packages(where="plugins")],
    package_dir={"deepradiomics_plugins": "plugins", "deepradiomics.data.params": "params"},
    include_package_data=False,
    package_data={
        "deepradiomics.data": ["LICENSE-DATA.md"],
        "deepradiomics.data.models": ["*/model.pt", "*/config.yaml", "*/card.md"],
        "deepradiomics.data.examples.lgg": ["*.nii.gz", "*.md"],
        "deepradiomics.data.examples.brain1": ["*.nrrd", "*.md", "*.txt"],
        "deepradiomics.data.params": ["*.yaml"],
    },
    # PyRadiomics is in the extra `pyradiomics` below, or built by `make install` (see the docstring)
    install_requires=[
        "SimpleITK>=2.2",
        "numpy>=1.24",
        "pandas>=2.0",
        "scikit-learn>=1.3",
        "scipy>=1.10",
        "statsmodels>=0.14",
        "scikit-posthocs>=0.9",
        "click>=8.1",
        "PyYAML>=6.0",
        "tqdm>=4.60",
        "matplotlib>=3.7",
        "torch>=2.1",
        "pyarrow>=14",
    ],
    extras_require={
        # measured: the 2,660 values of PyRadiomics' baseline (tests/test_parity.py) are bit for bit those of
        # PyRadiomics 3.0.1, and PyRadiomics' own test suite passes the same with deepradiomics.compat swapped in;
        # keep in step with deepradiomics.errors.PYRADIOMICS_REQUIREMENT
        "pyradiomics": ["pyradiomics-bhklab==3.1.4"],
        "dask": ["dask[distributed]>=2024.1"],
        "test": ["pytest>=7.4", "ruff>=0.5", "scikit-image>=0.22"],
    },
    entry_points={
        "console_scripts": ["deepradiomics=deepradiomics.cli:main"],
        "deepradiomics.feature_classes": [
            "vqhist = deepradiomics_plugins.vqhist:VQHistogram",
            "cnn = deepradiomics_plugins.cnn:CNNFeatures",
            "fisher = deepradiomics_plugins.fisher:FisherVector",
        ],
        "deepradiomics.commands": [
            "explain = deepradiomics_plugins.vqhist.cli:command",
        ],
    },
)
