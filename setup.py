"""deepradiomics: a plugin-based radiomics toolkit with deep and classical feature classes.

Install with ``make install`` (see the README): PyRadiomics 3.0.1 and the CPU build of torch need
special install steps that ``pip install .`` alone cannot express.
"""

from pathlib import Path

from setuptools import find_namespace_packages, find_packages, setup

version = {}
exec(Path("deepradiomics/_version.py").read_text(), version)

setup(
    name="deepradiomics",
    version=version["__version__"],
    description="Deep and classical radiomics features side by side, PyRadiomics-compatible",
    long_description=Path("README.md").read_text() if Path("README.md").exists() else "",
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
    install_requires=[
        "pyradiomics>=3.0.1",
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
