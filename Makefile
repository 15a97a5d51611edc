# Set-up and everyday commands. Everything installs into a project-local virtual environment (.venv),
# so `make run` and `make test` work the same on a fresh machine and in CI.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
DATA ?= ../shared/data
CASE ?= $(DATA)/lgg/TCGA_CS_4942_19970222
# the arguments of `extract` for the main job: the shared LGG case when ../shared/data is there, else the
# small real LGG case shipped inside the package (`deepradiomics example lgg`), so a bare clone runs too
CASE_ARGS = $(if $(wildcard $(CASE)/flair.nii.gz),$(CASE)/flair.nii.gz $(CASE)/mask.nii.gz -m t1=$(CASE)/t1.nii.gz -m t1ce=$(CASE)/t1ce.nii.gz,$$($(VENV)/bin/deepradiomics example lgg --shell))

.PHONY: install run test test-fast lint benchmark clean

install: $(VENV)/.installed

$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# PyRadiomics 3.0.1 (PyPI's newest usable release) builds C extensions against numpy and uses
	# versioneer at build time, but its sdist does not declare them, so pip's isolated build fails:
	# install the build requirements first, then build it without isolation.
	$(PIP) install --quiet numpy setuptools wheel versioneer
	$(PIP) install --quiet --no-build-isolation pyradiomics==3.0.1
	# Pinned: an unpinned torch (directly or via a dependency) pulls a CUDA build of several GB;
	# 2.13.0 is the CPU wheel this project is tested with.
	$(PIP) install --quiet torch==2.13.0
	# a stale deepradiomics.egg-info in the source folder would shadow the installed entry points
	# (plugins and plugin commands) for anything run from here, e.g. pytest: always rebuild it
	rm -rf deepradiomics.egg-info
	$(PIP) install --quiet -e '.[test,dask]'
	touch $@

# The main job: classical (PyRadiomics) + deep features of one real case in one row: vqhist with the shipped
# VQ model (codeword counts and frequencies) and cnn with the paper's seeded random VGG-19-3D.
# Written under runs/ (ignored by git), so the checkout stays clean.
run: install
	$(VENV)/bin/deepradiomics extract params/lgg_example.yaml $(CASE_ARGS) -o runs/features.csv
	@echo "wrote runs/features.csv"

# The test suite (what CI runs).
test: install
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow"

lint: install
	$(VENV)/bin/ruff check deepradiomics plugins tests benchmarks examples

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
