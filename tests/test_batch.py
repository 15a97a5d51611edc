"""Batch: real LGG cases, failures as error rows, resume after an interruption, parallel == serial."""

import shutil

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from deepradiomics import Extractor, batch
from deepradiomics.errors import ParamsError
from deepradiomics.naming import ERROR_COLUMN, feature_columns

PARAMS = {"setting": {"binWidth": 25}, "featureClass": {"firstorder": ["Mean", "Entropy", "Maximum"], "shape": ["VoxelVolume"]}}


@pytest.fixture
def study(tmp_path, lgg_manifest):
    """A manifest of 3 real LGG cases plus a missing file, an empty mask and a geometry mismatch."""
    source = pd.read_csv(lgg_manifest, dtype=str).head(3)
    rows = []
    for _, row in source.iterrows():
        folder = tmp_path / row["ID"]
        folder.mkdir()
        for name in ("flair", "t1", "mask"):
            shutil.copy(lgg_manifest.parent / row["ID"] / f"{name}.nii.gz", folder / f"{name}.nii.gz")
        rows.append({"ID": row["ID"], "Image": f"{row['ID']}/flair.nii.gz", "Mask": f"{row['ID']}/mask.nii.gz", "Image_t1": f"{row['ID']}/t1.nii.gz", "grade": row["grade"]})
    good = tmp_path / rows[0]["ID"]
    rows.append({"ID": "missing", "Image": "nowhere/flair.nii.gz", "Mask": rows[0]["Mask"], "Image_t1": "", "grade": "G2"})
    mask = sitk.ReadImage(str(good / "mask.nii.gz"))
    empty = sitk.Image(mask.GetSize(), mask.GetPixelID())
    empty.CopyInformation(mask)
    sitk.WriteImage(empty, str(tmp_path / "empty_mask.nii.gz"))
    rows.append({"ID": "emptymask", "Image": rows[0]["Image"], "Mask": "empty_mask.nii.gz", "Image_t1": "", "grade": "G3"})
    shifted = sitk.ReadImage(str(good / "flair.nii.gz"))
    shifted.SetOrigin((10.0, 0.0, 0.0))
    sitk.WriteImage(shifted, str(tmp_path / "shifted.nii.gz"))
    rows.append({"ID": "shifted", "Image": "shifted.nii.gz", "Mask": rows[0]["Mask"], "Image_t1": "", "grade": "G2"})
    manifest = tmp_path / "manifest.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    return manifest, [r["ID"] for r in rows[:3]]


def test_failed_cases_become_error_rows(study):
    manifest, good_ids = study
    table = Extractor(PARAMS).execute_batch(manifest)
    assert list(table.index) == good_ids + ["missing", "emptymask", "shifted"]
    assert table.index.name == "ID"
    assert list(table.columns[:4]) == ["Image", "Mask", "Image_t1", "grade"]  # input columns first
    features = feature_columns(table.columns)
    assert features == ["original_firstorder_Mean", "original_firstorder_Entropy", "original_firstorder_Maximum", "original_shape_VoxelVolume"]
    assert (table[features].dtypes == np.float64).all()
    assert table.loc[good_ids, features].notna().all().all()
    assert (table.loc[good_ids, ERROR_COLUMN] == "").all()
    assert "does not exist" in table.loc["missing", ERROR_COLUMN] and "nowhere" in table.loc["missing", ERROR_COLUMN]
    assert "the mask is empty" in table.loc["emptymask", ERROR_COLUMN]
    assert "geometry" in table.loc["shifted", ERROR_COLUMN]
    assert table.loc[["missing", "emptymask", "shifted"], features].isna().all().all()
    assert batch.failures(table) == [(i, table.loc[i, ERROR_COLUMN]) for i in ("missing", "emptymask", "shifted")]


def test_interrupted_batch_resumes_where_it_stopped(study, tmp_path, monkeypatch):
    manifest, good_ids = study
    out_dir = tmp_path / "cache"
    extractor = Extractor(PARAMS)
    calls = []
    real = batch.compute_row

    def interrupted(extractor, row, base):
        if len(calls) == 2:
            raise KeyboardInterrupt  # the user presses Ctrl-C during the third case
        calls.append(row["ID"])
        return real(extractor, row, base)

    monkeypatch.setattr(batch, "compute_row", interrupted)
    with pytest.raises(KeyboardInterrupt):
        extractor.execute_batch(manifest, out_dir=out_dir)
    assert sorted(p.stem for p in (out_dir / "cases").glob("*.json")) == sorted(calls)

    resumed = []
    monkeypatch.setattr(batch, "compute_row", lambda e, row, base: resumed.append(row["ID"]) or real(e, row, base))
    table = extractor.execute_batch(manifest, out_dir=out_dir)
    assert set(resumed).isdisjoint(calls) and len(resumed) == 6 - len(calls)
    again = []
    monkeypatch.setattr(batch, "compute_row", lambda e, row, base: again.append(row["ID"]) or real(e, row, base))
    second = extractor.execute_batch(manifest, out_dir=out_dir)
    assert sorted(again) == ["emptymask", "missing", "shifted"]  # failed cases are retried, finished ones skipped
    pd.testing.assert_frame_equal(table, second)
    # other params: nothing is reused
    other = Extractor({**PARAMS, "setting": {"binWidth": 10}})
    fresh = []
    monkeypatch.setattr(batch, "compute_row", lambda e, row, base: fresh.append(row["ID"]) or real(e, row, base))
    other.execute_batch(manifest, out_dir=out_dir)
    assert len(fresh) == 6


def test_parallel_equals_serial(study):
    manifest, _ = study
    extractor = Extractor(PARAMS)
    serial = extractor.execute_batch(manifest, jobs=1)
    parallel = extractor.execute_batch(manifest, jobs=2)
    pd.testing.assert_frame_equal(serial, parallel)


@pytest.mark.slow
def test_dask_scheduler_equals_serial(study):
    pytest.importorskip("dask.distributed")
    manifest, _ = study
    extractor = Extractor(PARAMS)
    pd.testing.assert_frame_equal(extractor.execute_batch(manifest), batch.run_batch(extractor, manifest, jobs=2, scheduler="dask"))


def test_manifest_errors(tmp_path):
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"ID": ["a"], "image": ["x.nii.gz"], "Mask": ["m.nii.gz"]}).to_csv(bad, index=False)
    with pytest.raises(ParamsError, match="bad.csv' has no 'Image' column. Did you mean 'image'"):
        batch.read_manifest(bad)
    dup = tmp_path / "dup.csv"
    pd.DataFrame({"ID": ["a", "a"], "Image": ["x", "y"], "Mask": ["m", "n"]}).to_csv(dup, index=False)
    with pytest.raises(ParamsError, match="repeated: a"):
        batch.read_manifest(dup)
    with pytest.raises(ParamsError, match="does not exist"):
        batch.read_manifest(tmp_path / "none.csv")
