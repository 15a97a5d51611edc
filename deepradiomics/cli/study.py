"""``deepradiomics study``: compare feature families on a label; write a report folder."""

from __future__ import annotations

import click

from .common import report_errors, setup_logging, verbosity_options


@click.command("study")
@click.argument("features", type=click.Path(dir_okay=False), nargs=-1)
@click.option(
    "--manifest",
    type=click.Path(dir_okay=False),
    default=None,
    help="Study from images: the batch manifest of the cases (with --params, instead of FEATURES).",
)
@click.option(
    "--params",
    "params",
    type=click.Path(dir_okay=False),
    default=None,
    help="Study from images: the params file; fitted classes (e.g. fisher) are refitted inside every training fold.",
)
@click.option(
    "-j", "--jobs", type=click.IntRange(min=1), default=1, show_default=True, help="Worker processes for a study from images."
)
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Study from images: keep per-case rows and descriptors here; a re-run reuses them.",
)
@click.option(
    "--labels",
    type=click.Path(dir_okay=False),
    default=None,
    help="Labels table with an ID column, e.g. the batch manifest (default: TARGET is a column of FEATURES, or of the manifest).",
)
@click.option("--target", required=True, help="Label column; rows where it is blank are dropped.")
@click.option(
    "--positive", default=None, help="Value of TARGET that is the positive class (default: the larger of its two values)."
)
@click.option(
    "--groups",
    "groups",
    multiple=True,
    metavar="NAME=CLS1,CLS2",
    help="Define a feature family from feature classes (repeatable); replaces the defaults classical / each deep class / all.",
)
@click.option(
    "--model",
    "models",
    multiple=True,
    type=click.Choice(["logistic", "dlr", "dlr-loo"]),
    help="Model(s) to evaluate (repeatable; default logistic and dlr): logistic = L2 logistic regression; dlr = t-test+F-score selection, linear SVM (both repeated k-fold); dlr-loo = dlr with the paper's leave-one-out.",
)
@click.option(
    "--protocol",
    type=click.Choice(["default", "paper"]),
    default="default",
    show_default=True,
    help="dlr/dlr-loo choices: default (Welch t-test, k=auto, z-scored inputs: the project's) or paper (the DLR paper's: "
    "Student's t-test, every feature passing it, L2-normalised inputs such as Fisher vectors unscaled; other families, "
    "which the paper did not have, z-scored). --dlr-k/--ttest/--svm-scaling change one.",
)
@click.option("--dlr-k", default=None, metavar="K|auto|all", help="dlr: features kept after the F-score ranking (a number, auto, or all passing the t-test).")
@click.option("--ttest", type=click.Choice(["student", "welch"]), default=None, help="dlr: the t-test of the selection (student is the DLR paper's).")
@click.option(
    "--svm-scaling",
    type=click.Choice(["zscore", "none", "auto"]),
    default=None,
    help="dlr: the SVM's inputs z-scored, as they are (none), or as they are only when every training row is L2-normalised (auto: "
    "Fisher vectors unscaled as in the DLR paper, other families z-scored; --protocol paper's).",
)
@click.option(
    "--clip",
    default=None,
    metavar="SD|none",
    help="Every model: clip standardised values at +-SD inside each training fold (default 5), or none (not clipped).",
)
@click.option("--folds", type=click.IntRange(min=2), default=5, show_default=True, help="Folds of the repeated stratified CV.")
@click.option("--repeats", type=click.IntRange(min=1), default=5, show_default=True, help="Repeats of the stratified CV.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the CV splits and the bootstrap.")
@click.option(
    "--test",
    type=click.Path(dir_okay=False),
    default=None,
    help="External test features (a manifest for a study from images): fit on all of FEATURES, report metrics on this set (external.csv).",
)
@click.option("--test-labels", type=click.Path(dir_okay=False), default=None, help="Labels of the test set (default: --labels).")
@click.option("--caveat", "caveats", multiple=True, help="A data caveat to print in the report (repeatable).")
@click.option(
    "--caveats-file",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    help="Text file of data caveats, one per non-empty line.",
)
@click.option(
    "--correction",
    type=click.Choice(["holm", "fdr_bh", "bonferroni", "none"]),
    default="holm",
    show_default=True,
    help="Multiple-testing correction (comparisons, responsible vectors).",
)
@click.option(
    "--responsible",
    type=click.Choice(["auto", "project", "paper", "none"]),
    default="auto",
    show_default=True,
    help="Responsible codewords: auto (the project's procedure when a class declares a histogram, e.g. vqhist), project, "
    "paper (the VQ paper's: uncorrected p < 0.05 preselection and tests, on the raw counts), none.",
)
@click.option("--no-responsible", is_flag=True, help="Same as --responsible none."
)
@click.option(
    "--bootstrap",
    "n_boot",
    type=click.IntRange(min=100),
    default=2000,
    show_default=True,
    help="Bootstrap replicates for leave-one-out and external CIs.",
)
@click.option("--id-column", default="ID", show_default=True, help="Case ID column of the labels tables.")
@click.option(
    "-o",
    "--out-dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Report folder (metrics.csv, comparisons.csv, ROC PNGs, report.html, ...).",
)
@verbosity_options
@report_errors
def command(**options):
    """Compare feature families of FEATURES (one or more tables from `deepradiomics batch`, joined on the ID) on a binary label.

    Each family (default: classical = PyRadiomics classes, each deep class, all) is evaluated by a
    leakage-free pipeline; families are compared pairwise; a self-contained report.html is written.

    Instead of FEATURES, --manifest and --params study the images directly: classes that need no fit are
    extracted once, and fitted classes (e.g. fisher's GMM) are fitted inside every training fold on the
    training cases only, so that no test patient informs them (descriptors are computed once per case).
    With FEATURES as well, its columns join those from the images (on the case ID).

    \b
    Examples:
      deepradiomics study features.csv --labels cases.csv --target grade --positive G3 -o report/
      deepradiomics study --manifest cases.csv --params params/fisher.yaml --target idh_mutant --model dlr -o report/ -j 2
    """
    from dataclasses import fields
    from pathlib import Path

    from ..io import check_writable_folder
    from ..study import StudySpec, parse_groups, run_study

    setup_logging(options["verbose"], options["quiet"])
    manifest, params, out_dir = options["manifest"], options["params"], options["out_dir"]
    # several FEATURES tables are joined on the case ID (one batch per params file, say)
    features = None if not options["features"] else (options["features"][0] if len(options["features"]) == 1 else list(options["features"]))
    if (manifest is None) != (params is None):
        raise click.UsageError("a study from images needs both --manifest and --params")
    if features is None and (manifest is None or params is None):
        raise click.UsageError("give FEATURES (a table from `deepradiomics batch`), or --manifest and --params to study the images")
    check_writable_folder(out_dir, "--out-dir (the report folder)")
    _check_outputs(options, out_dir)
    caveats = list(options["caveats"])
    if options["caveats_file"]:
        caveats += [line.strip() for line in Path(options["caveats_file"]).read_text().splitlines() if line.strip()]
    chosen = {f.name: options[f.name] for f in fields(StudySpec) if f.name in options}
    chosen.update(
        features=features,
        groups=parse_groups(options["groups"]) or None,
        models=list(options["models"]) or ["logistic", "dlr"],
        caveats=caveats,
        responsible="none" if options["no_responsible"] else options["responsible"],
        progress=not options["quiet"],
    )
    chosen.update(protocol=_protocol(options), taming=_taming(options["clip"]))
    result = run_study(StudySpec(**chosen))
    report = result.write(out_dir)
    auc_rows = result.metrics[result.metrics["metric"] == "AUC"]
    for row in auc_rows.itertuples():
        click.echo(
            f"{row.family:>12} {row.model:<8} AUC {row.mean:.3f} [{row.ci_low:.3f}, {row.ci_high:.3f}] ({row.validation})",
            err=True,
        )
    click.echo(str(report))


#: what a study writes into its report folder (for the check that it overwrites no input)
STUDY_WRITES = (
    "metrics.csv", "fold_metrics.csv", "comparisons.csv", "predictions.csv", "study.json", "roc_*.png", "external.csv",
    "external_predictions.csv", "responsible_vectors.csv", "responsible_vectors.png", "report.html",
)


def _check_outputs(options: dict, out_dir) -> None:
    """Refuse, before any work, a report or cache folder that would overwrite an input (tables, manifests, params),
    and a study from images over a manifest without cases."""
    from ..io import Output
    from .common import cache_outputs, check_outputs, load_extractor, manifest_inputs, params_inputs, read_cohort

    inputs: list = [(f"FEATURES table '{f}'", f) for f in options["features"] or ()]
    inputs += [(f"--{key.replace('_', '-')}", options[key]) for key in ("labels", "test", "test_labels", "caveats_file")]
    if options["manifest"] is not None:
        read_cohort(options["manifest"], "--manifest")
        inputs += manifest_inputs(options["manifest"])
        if options["test"] is not None:  # a study from images takes a manifest as its test set too
            inputs += manifest_inputs(options["test"])
    if options["params"] is not None:
        inputs += params_inputs(options["params"], load_extractor(options["params"]))
    check_outputs([Output("--out-dir", out_dir, STUDY_WRITES), *cache_outputs("--cache-dir", options["cache_dir"])], inputs)


def _protocol(options):
    from ..study.classification import dlr_protocol

    return dlr_protocol(options["protocol"], k=options["dlr_k"], ttest=options["ttest"], scaling=options["svm_scaling"])


def _taming(clip):
    import dataclasses

    from ..errors import ParamsError
    from ..study.classification import DEFAULT_TAMING

    if clip is None:
        return DEFAULT_TAMING
    if str(clip).strip().lower() == "none":
        return dataclasses.replace(DEFAULT_TAMING, clip=None)
    try:
        value = float(clip)
    except ValueError:
        raise ParamsError(f"--clip {clip!r} is not a number of standard deviations or 'none'") from None
    return dataclasses.replace(DEFAULT_TAMING, clip=value)
