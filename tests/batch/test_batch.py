"""Batch: real LGG cases, failures as error rows, resume after an interruption, parallel == serial."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from deepradiomics import Extractor, batch
from deepradiomics.errors import ParamsError
from deepradiomics.naming import ERROR_COLUMN, feature_columns

PARAMS = {"setting": {"binWidth": 25}, "featureClass": {"firstorder": ["Mean", "Entropy", "Maximum"], "shape": ["VoxelVolume"]}}


def entry_folder(out_dir, extractor=None):
    """The cache entry folder of ``extractor``'s batch task under ``out_dir`` (the only entry when not given)."""
    if extractor is not None:
        return out_dir / batch.cache.namespace_id(extractor.batch_task().namespace())
    (entry,) = batch.cache.entries(out_dir)
    return entry.folder


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
    assert features == ["original_shape_VoxelVolume", "original_firstorder_Mean", "original_firstorder_Entropy", "original_firstorder_Maximum"]
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
    real = batch.BatchTask.__call__

    def interrupted(task, row, base):
        if len(calls) == 2:
            raise KeyboardInterrupt  # the user presses Ctrl-C during the third case
        calls.append(row["ID"])
        return real(task, row, base)

    monkeypatch.setattr(batch.BatchTask, "__call__", interrupted)
    with pytest.raises(KeyboardInterrupt):
        extractor.execute_batch(manifest, out_dir=out_dir)
    entry = entry_folder(out_dir)
    stored = sorted(p.name for p in (entry / "cases").glob("*.json")) + sorted(p.name for p in (entry / "failed").glob("*.json"))
    assert stored == sorted(f"{batch.cache_file_name(i)}.json" for i in calls)

    resumed = []
    monkeypatch.setattr(batch.BatchTask, "__call__", lambda t, row, base: resumed.append(row["ID"]) or real(t, row, base))
    table = extractor.execute_batch(manifest, out_dir=out_dir)
    finished = [i for i in calls if i in good_ids]
    assert set(resumed).isdisjoint(finished) and len(resumed) == 6 - len(finished)
    again = []
    monkeypatch.setattr(batch.BatchTask, "__call__", lambda t, row, base: again.append(row["ID"]) or real(t, row, base))
    second = extractor.execute_batch(manifest, out_dir=out_dir)
    assert sorted(again) == ["emptymask", "missing", "shifted"]  # failed cases are retried, finished ones skipped
    pd.testing.assert_frame_equal(table, second)
    # other params: nothing is reused
    other = Extractor({**PARAMS, "setting": {"binWidth": 10}})
    fresh = []
    monkeypatch.setattr(batch.BatchTask, "__call__", lambda t, row, base: fresh.append(row["ID"]) or real(t, row, base))
    other.execute_batch(manifest, out_dir=out_dir)
    assert len(fresh) == 6
    # and the first params' rows are still there: the two share the folder without evicting each other
    resumed.clear()
    monkeypatch.setattr(batch.BatchTask, "__call__", lambda t, row, base: resumed.append(row["ID"]) or real(t, row, base))
    pd.testing.assert_frame_equal(extractor.execute_batch(manifest, out_dir=out_dir), table)
    assert sorted(resumed) == ["emptymask", "missing", "shifted"]
    assert {e.folder for e in batch.cache.entries(out_dir)} == {entry_folder(out_dir, extractor), entry_folder(out_dir, other)}


def _recomputed(extractor, manifest, out_dir, monkeypatch) -> list[str]:
    computed = []
    real = batch.BatchTask.__call__
    monkeypatch.setattr(batch.BatchTask, "__call__", lambda t, row, base: computed.append(row["ID"]) or real(t, row, base))
    extractor.execute_batch(manifest, out_dir=out_dir)
    monkeypatch.setattr(batch.BatchTask, "__call__", real)
    return sorted(computed)


def test_cache_is_keyed_on_every_input_and_never_returns_stale_rows(study, tmp_path, monkeypatch):
    manifest, good_ids = study
    frame = pd.read_csv(manifest, dtype=str, keep_default_na=False).head(3)
    frame.to_csv(manifest, index=False)
    out_dir = tmp_path / "cache"
    extractor = Extractor(PARAMS)
    first = extractor.execute_batch(manifest, out_dir=out_dir)
    assert _recomputed(extractor, manifest, out_dir, monkeypatch) == []  # nothing changed: all reused
    # the manifest points a case to another mask file (same content, other path)
    other_mask = tmp_path / "copy_mask.nii.gz"
    shutil.copy(tmp_path / frame.loc[0, "Mask"], other_mask)
    frame.loc[0, "Mask"] = str(other_mask)
    frame.to_csv(manifest, index=False)
    assert _recomputed(extractor, manifest, out_dir, monkeypatch) == [good_ids[0]]
    # an image overwritten in place (same path): its size/mtime change
    image = tmp_path / frame.loc[1, "Image"]
    original = sitk.ReadImage(str(image))
    brighter = sitk.GetImageFromArray(sitk.GetArrayFromImage(original)[:, :, ::-1].copy())  # other values, same grid
    brighter.CopyInformation(original)
    sitk.WriteImage(brighter, str(image))
    assert _recomputed(extractor, manifest, out_dir, monkeypatch) == [good_ids[1]]
    # a Label column appears: every case's label is part of its key
    frame["Label"] = "1"
    frame.to_csv(manifest, index=False)
    assert _recomputed(extractor, manifest, out_dir, monkeypatch) == []  # same label value as the default
    frame.loc[2, "Label"] = "2"
    frame.to_csv(manifest, index=False)
    assert _recomputed(extractor, manifest, out_dir, monkeypatch) == [good_ids[2]]
    assert first.shape[0] == 3


def test_damaged_or_incomplete_cached_rows_are_recomputed_with_one_warning(study, tmp_path, monkeypatch, caplog):
    manifest, good_ids = study
    out_dir = tmp_path / "cache"
    extractor = Extractor(PARAMS)
    reference = extractor.execute_batch(manifest, out_dir=out_dir)
    files = {i: entry_folder(out_dir) / "cases" / f"{batch.cache_file_name(i)}.json" for i in good_ids}
    stored = json.loads(files[good_ids[0]].read_text())
    del stored["row"]["original_firstorder_Mean"]  # a row missing a feature column
    files[good_ids[0]].write_text(json.dumps(stored))
    files[good_ids[1]].write_bytes(b"\x00\x01 binary garbage")
    files[good_ids[2]].write_text("[1, 2, 3]")  # JSON, but not a cached row
    with caplog.at_level("WARNING", logger="deepradiomics.batch"):
        assert _recomputed(extractor, manifest, out_dir, monkeypatch) == sorted(good_ids + ["emptymask", "missing", "shifted"])
    assert sum("is damaged" in r.getMessage() for r in caplog.records) == 3
    pd.testing.assert_frame_equal(extractor.execute_batch(manifest, out_dir=out_dir), reference)


def test_ids_that_sanitise_alike_do_not_share_a_cache_file():
    assert batch.cache_file_name("a/b") != batch.cache_file_name("a_b")
    assert batch.cache_file_name("a b").startswith("a_b-")


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
    pd.testing.assert_frame_equal(extractor.execute_batch(manifest), batch.run_batch(extractor.batch_task(), manifest, jobs=2, scheduler="dask"))


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


def test_manifest_refuses_blank_ids_output_columns_and_binary_files(tmp_path):
    blank = tmp_path / "blank.csv"
    pd.DataFrame({"ID": ["a", " "], "Image": ["x", "y"], "Mask": ["m", "n"]}).to_csv(blank, index=False)
    with pytest.raises(ParamsError, match="row 3 has a blank ID"):
        batch.read_manifest(blank)
    clash = tmp_path / "clash.csv"
    pd.DataFrame({"ID": ["a"], "Image": ["x"], "Mask": ["m"], "diagnostics_Error": ["?"]}).to_csv(clash, index=False)
    with pytest.raises(ParamsError, match="'diagnostics_Error' is named like an output column"):
        batch.read_manifest(clash)
    feature = tmp_path / "feature.csv"
    pd.DataFrame({"ID": ["a"], "Image": ["x"], "Mask": ["m"], "original_firstorder_Mean": [1]}).to_csv(feature, index=False)
    with pytest.raises(ParamsError, match="original_firstorder_Mean"):
        batch.read_manifest(feature)
    (tmp_path / "zero.csv").write_bytes(b"")
    with pytest.raises(ParamsError, match="zero.csv' is empty"):
        batch.read_manifest(tmp_path / "zero.csv")
    (tmp_path / "bin.csv").write_bytes(b"ID,Image\x00\x01\x02")
    with pytest.raises(ParamsError, match="bin.csv' is a binary file"):
        batch.read_manifest(tmp_path / "bin.csv")


def test_labels_must_be_whole_numbers_and_images_not_blank(tmp_path):
    from deepradiomics.errors import CaseError

    with pytest.raises(CaseError, match="'1.5' is not a whole number"):
        batch.case_from_row({"ID": "a", "Image": "x", "Mask": "m", "Label": "1.5"}, tmp_path)
    with pytest.raises(CaseError, match="out of range"):
        batch.case_from_row({"ID": "a", "Image": "x", "Mask": "m", "Label": str(2**40)}, tmp_path)
    with pytest.raises(CaseError, match="'Image' cell is blank"):
        batch.case_from_row({"ID": "a", "Image": " ", "Mask": "m"}, tmp_path)
    assert batch.case_from_row({"ID": "a", "Image": "x", "Mask": "m", "Label": "2.0"}, tmp_path).label == 2
