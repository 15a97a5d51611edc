"""End-to-end on synthetic tables: run_study, the report folder and the CLI (through CliRunner)."""

import re

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from deepradiomics.cli import main
from deepradiomics.errors import ParamsError
from deepradiomics.study import StudyDataError, run_study

from ._synthetic import count_table, noise_table

CAVEAT = "volumes are 8-bit slices; spacing set to 1 mm"
FAST = dict(folds=3, repeats=2, n_boot=200)


def _cohort(n, seed, prefix):
    counts, y = count_table(n=n, seed=seed, planted={10: +1, 30: -1}, shift=12)
    noise, _ = noise_table(n=n, p=20, seed=seed)
    counts.index = noise.index = pd.Index([f"{prefix}{i:03d}" for i in range(n)], name="ID")
    table = pd.concat([noise, counts], axis=1)
    table.insert(0, "Image", [f"{i}/flair.nii.gz" for i in table.index])  # pass-through column
    table.insert(1, "diagnostics_Versions_deepradiomics", "0.1")
    labels = pd.DataFrame({"ID": table.index, "grade": np.where(y == 1, "G3", "G2"), "age": 50})
    return table, labels


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("study")
    train, train_labels = _cohort(48, 0, "train")
    test, test_labels = _cohort(30, 1, "test")
    train_labels.loc[5, "grade"] = np.nan  # one blank label: dropped with a message
    train.to_csv(folder / "features.csv")
    test.to_csv(folder / "test_features.csv")
    pd.concat([train_labels, test_labels]).to_csv(folder / "cases.csv", index=False)
    return folder


@pytest.fixture(scope="module")
def study(files):
    result = run_study(
        files / "features.csv",
        labels=files / "cases.csv",
        target="grade",
        positive="G3",
        test=files / "test_features.csv",
        caveats=[CAVEAT],
        **FAST,
    )
    report = result.write(files / "report")
    return result, report


def test_result_content(study):
    result, _ = study
    assert result.info["n_cases"] == 47 and result.info["n_dropped_blank"] == 1
    assert any("dropped 1 of 48" in n for n in result.info["notes"])
    assert (result.info["positive"], result.info["negative"]) == ("G3", "G2")
    auc = result.metrics[result.metrics.metric == "AUC"].set_index(["family", "model"])["mean"]
    # the planted codewords carry the label; the classical columns are noise
    assert auc[("vqhist", "logistic")] > 0.85
    assert abs(auc[("classical", "logistic")] - 0.5) < 0.25


def test_metrics_csv_schema(study):
    _, report = study
    metrics = pd.read_csv(report.parent / "metrics.csv")
    assert list(metrics.columns[:7]) == ["family", "model", "metric", "mean", "sd", "ci_low", "ci_high"]
    assert set(metrics["family"]) == {"classical", "vqhist", "all"}
    assert set(metrics["model"]) == {"logistic", "dlr"}
    assert set(metrics["metric"]) == {"AUC", "accuracy", "sensitivity", "specificity", "PPV", "NPV", "MCC", "F1"}
    assert len(metrics) == 3 * 2 * 8 and not metrics.duplicated(["family", "model", "metric"]).any()
    finite = metrics.dropna(subset=["mean"])
    assert ((finite["ci_low"] <= finite["mean"] + 1e-12) & (finite["mean"] <= finite["ci_high"] + 1e-12)).all()


def test_comparisons_external_and_responsible_files(study):
    result, report = study
    folder = report.parent
    comp = pd.read_csv(folder / "comparisons.csv")
    assert {"family_a", "family_b", "test", "p_value", "p_adjusted"} <= set(comp.columns)
    assert len(comp) == 2 * 3 * 2  # 2 models x 3 pairs x (Nadeau-Bengio, DeLong)
    ext = pd.read_csv(folder / "external.csv")
    assert (ext["n_cases"] == 30).all()
    ext_auc = ext[(ext.metric == "AUC") & (ext.family == "vqhist") & (ext.model == "logistic")].iloc[0]
    assert ext_auc["estimate"] > 0.8 and ext_auc["ci_low"] <= ext_auc["estimate"] <= ext_auc["ci_high"]
    rv = pd.read_csv(folder / "responsible_vectors.csv")
    assert set(rv.loc[rv["responsible"], "codeword"]) == {"Codeword010", "Codeword030"}
    for name in ("roc_logistic.png", "roc_dlr.png", "roc_external_logistic.png", "responsible_vectors.png"):
        assert (folder / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_html_is_self_contained_and_readable(study):
    result, report = study
    page = report.read_text()
    sources = re.findall(r"""src\s*=\s*["']([^"']*)""", page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "<link" not in page and "http://" not in page and "https://" not in page
    # plain-language summary first, then caveats (with the data caveat passed in), then the tables
    positions = [page.index(h) for h in ("<h2>Summary", "<h2>Caveats", "<h2>Performance", "<h2>Responsible")]
    assert positions == sorted(positions)
    assert CAVEAT in page and "Small sample" in page
    assert "Codeword010" in page and "External validation" in page
    vq = result.metrics.query("family == 'vqhist' and model == 'logistic' and metric == 'AUC'").iloc[0]
    assert f"{vq['mean']:.2f} [{vq['ci_low']:.2f}, {vq['ci_high']:.2f}]" in page


def test_cli_help():
    result = CliRunner().invoke(main, ["study", "--help"])
    assert result.exit_code == 0
    for option in ("--target", "--labels", "--groups", "--test", "--folds", "--out-dir"):
        assert option in result.output


def test_cli_end_to_end(files, tmp_path):
    out = tmp_path / "rep"
    result = CliRunner().invoke(
        main,
        [
            "study",
            str(files / "features.csv"),
            "--labels",
            str(files / "cases.csv"),
            "--target",
            "grade",
            "--groups",
            "deep=vqhist",
            "--groups",
            "noise=firstorder",
            "--model",
            "logistic",
            "--folds",
            "3",
            "--repeats",
            "2",
            "--caveat",
            CAVEAT,
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "dropped 1 of 48" in result.stderr
    assert result.stdout.strip() == str(out / "report.html")
    metrics = pd.read_csv(out / "metrics.csv")
    assert set(metrics["family"]) == {"deep", "noise"} and set(metrics["model"]) == {"logistic"}
    assert (out / "responsible_vectors.csv").exists() and (out / "report.html").exists()
    assert "Where this differs from the paper's procedure" in (out / "report.html").read_text()
    # the paper's procedure on demand, and none at all
    paper = CliRunner().invoke(
        main, ["study", str(files / "features.csv"), "--labels", str(files / "cases.csv"), "--target", "grade", "--model", "logistic",
               "--folds", "3", "--repeats", "1", "--responsible", "paper", "-o", str(tmp_path / "paper")],
    )
    assert paper.exit_code == 0, paper.output
    assert "the paper's procedure as it describes it" in (tmp_path / "paper" / "report.html").read_text()
    assert pd.read_csv(tmp_path / "paper" / "responsible_vectors.csv")["lrt_p_adjusted"].dropna().equals(
        pd.read_csv(tmp_path / "paper" / "responsible_vectors.csv")["lrt_p"].dropna()
    )
    none = CliRunner().invoke(
        main, ["study", str(files / "features.csv"), "--labels", str(files / "cases.csv"), "--target", "grade", "--model", "logistic",
               "--folds", "3", "--repeats", "1", "--no-responsible", "-o", str(tmp_path / "none")],
    )
    assert none.exit_code == 0 and not (tmp_path / "none" / "responsible_vectors.csv").exists()


def test_cli_bad_target_names_the_column(files, tmp_path):
    result = CliRunner().invoke(
        main,
        [
            "study",
            str(files / "features.csv"),
            "--labels",
            str(files / "cases.csv"),
            "--target",
            "grad",
            "-o",
            str(tmp_path / "x"),
        ],
    )
    assert result.exit_code != 0
    assert "'grad'" in result.output and "Did you mean 'grade'?" in result.output
    assert "cases.csv" in result.output and "age" in result.output  # names the file and lists its columns
    assert not (tmp_path / "x").exists()


def test_bad_positive_and_bad_labels_tables(files, tmp_path):
    with pytest.raises(StudyDataError, match=r"--positive 'G4'.*G2, G3"):
        run_study(files / "features.csv", labels=files / "cases.csv", target="grade", positive="G4")
    pd.DataFrame({"case": ["a"], "grade": ["G2"]}).to_csv(tmp_path / "noid.csv", index=False)
    with pytest.raises(StudyDataError, match="no 'ID' column"):
        run_study(files / "features.csv", labels=tmp_path / "noid.csv", target="grade")
    pd.DataFrame({"ID": ["x1", "x2"], "grade": ["G2", "G3"]}).to_csv(tmp_path / "other.csv", index=False)
    with pytest.raises(StudyDataError, match="no case ID of the features table"):
        run_study(files / "features.csv", labels=tmp_path / "other.csv", target="grade")
    with pytest.raises(StudyDataError, match="two classes"):
        run_study(files / "features.csv", labels=files / "cases.csv", target="age")


def test_target_from_the_features_table_and_option_errors(files, tmp_path):
    table = pd.read_csv(files / "features.csv", index_col=0).copy()
    labels = pd.read_csv(files / "cases.csv").set_index("ID")
    grade = labels["grade"].reindex(table.index).rename("grade")
    table = pd.concat([table, grade], axis=1)  # the target as a pass-through manifest column
    result = run_study(table, target="grade", models=["logistic"], folds=3, repeats=1, responsible=False)
    assert result.info["n_cases"] == 47 and result.responsible is None
    noise_only = table[[c for c in table.columns if "vqhist" not in c]]
    with pytest.raises(StudyDataError, match="no class of the features table declares a histogram"):
        run_study(noise_only, target="grade", models=["logistic"], folds=3, repeats=1, responsible=True)


def test_external_test_set_must_hold_other_patients(files):
    with pytest.raises(StudyDataError, match="shares 47 case ID"):
        run_study(
            files / "features.csv",
            labels=files / "cases.csv",
            target="grade",
            test=files / "features.csv",
            models=["logistic"],
            folds=3,
            repeats=1,
        )


def test_ids_with_leading_zeros_join_as_text(tmp_path):
    X, y = noise_table(n=20, p=4, seed=9)
    X.index = pd.Index([f"{i:03d}" for i in range(20)], name="ID")
    X.to_csv(tmp_path / "f.csv")
    labels = pd.DataFrame({"ID": X.index, "label": y})
    labels.to_csv(tmp_path / "l.csv", index=False)
    result = run_study(tmp_path / "f.csv", labels=tmp_path / "l.csv", target="label", models=["logistic"], folds=2, repeats=1)
    assert result.info["n_cases"] == 20
    assert list(result.predictions.index[:2]) == ["000", "001"]


def test_external_labels_must_match_the_training_classes(files, tmp_path):
    test = pd.read_csv(files / "test_features.csv", index_col=0)
    labels = pd.read_csv(files / "cases.csv")
    labels.loc[labels["ID"] == test.index[0], "grade"] = "G4"
    labels.to_csv(tmp_path / "cases.csv", index=False)
    with pytest.raises(StudyDataError, match=r"\['G4'\] that the training set does not have"):
        run_study(
            files / "features.csv",
            labels=files / "cases.csv",
            target="grade",
            test=files / "test_features.csv",
            test_labels=tmp_path / "cases.csv",
            models=["logistic"],
            folds=3,
            repeats=1,
        )


def test_responsible_vectors_auto_skips_with_a_note_but_true_raises():
    counts, y = count_table(n=40, seed=1)
    counts.iloc[3, 0] = np.nan  # incomplete counts: the classification still runs (imputed in the folds)
    labels = pd.DataFrame({"ID": counts.index, "t": y})
    result = run_study(counts, labels=labels, target="t", models=["logistic"], folds=3, repeats=1)
    assert result.responsible is None
    assert any(n.startswith("responsible vectors skipped") and "Codeword000" in n for n in result.info["notes"])
    with pytest.raises(ParamsError, match="Codeword000"):
        run_study(counts, labels=labels, target="t", models=["logistic"], folds=3, repeats=1, responsible=True)


def test_the_dlr_papers_protocol_in_one_command_and_its_options(files, tmp_path):
    import json

    base = ["study", str(files / "features.csv"), "--labels", str(files / "cases.csv"), "--target", "grade", "--model", "dlr", "--folds", "3", "--repeats", "1", "--no-responsible"]
    paper = CliRunner().invoke(main, [*base, "--protocol", "paper", "-o", str(tmp_path / "paper")])
    assert paper.exit_code == 0, paper.output
    info = json.loads((tmp_path / "paper" / "study.json").read_text())
    assert info["dlr_protocol"] == (
        "Student t-test p < 0.05, all passing features, inputs unscaled when L2-normalised per case (Fisher vectors), else z-scored and clipped"
    )
    assert info["dlr_protocol_is_paper"]
    selection = pd.read_csv(tmp_path / "paper" / "selection.csv")
    # the table's rows are not L2-normalised vectors: every fit z-scored them
    assert (selection["scaled"] == 1).all()
    assert len(selection) == 3 * len(set(selection["family"])) and (selection["n_selected"] >= 1).all()
    # with k=all every feature passing the t-test reaches the SVM (at least one: the smallest p)
    assert (selection["n_selected"] == selection["n_passed_ttest"].clip(lower=1)).all()
    assert "the DLR paper's settings" in (tmp_path / "paper" / "report.html").read_text()
    two = CliRunner().invoke(main, [*base, "--dlr-k", "2", "--ttest", "student", "-o", str(tmp_path / "two")])
    assert two.exit_code == 0, two.output
    assert (pd.read_csv(tmp_path / "two" / "selection.csv")["n_selected"] <= 2).all()
    bad = CliRunner().invoke(main, [*base, "--dlr-k", "zero", "-o", str(tmp_path / "bad")])
    assert bad.exit_code == 1 and "'zero' is not valid" in bad.output and not (tmp_path / "bad").exists()
