"""Figures of a study (matplotlib, Agg backend: no display needed).

Each function draws one figure, saves it as PNG to ``path`` and returns the path.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def roc_points(y_true, scores) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates of the ROC curve."""
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(np.asarray(y_true).astype(int), np.asarray(scores, float))
    return fpr, tpr


def plot_roc(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray, float]],
    path: str | Path,
    title: str,
) -> Path:
    """ROC curves, one per label: ``{label: (y_true, scores, auc)}``."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 5.0), dpi=110)
    for label, (y_true, scores, auc_value) in curves.items():
        fpr, tpr = roc_points(y_true, scores)
        ax.plot(fpr, tpr, label=f"{label} (AUC {auc_value:.2f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="chance")
    ax.set_xlabel("1 - specificity (false-positive rate)")
    ax.set_ylabel("sensitivity (true-positive rate)")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_class_histograms(
    class_means: pd.DataFrame,
    responsible: pd.DataFrame,
    path: str | Path,
    title: str = "Average codeword histogram per class",
) -> Path:
    """Average codeword histogram of each class with the responsible codewords marked.

    Parameters
    ----------
    class_means
        Rows: classes; columns: codeword columns (mean count per case), as in
        :attr:`ResponsibleVectors.class_means`.
    responsible
        Rows of the responsible-vectors table with ``responsible`` true (``column``, ``codeword``,
        ``responsible_for``).
    """
    plt = _pyplot()
    columns = list(class_means.columns)
    x = np.arange(len(columns))
    fig, axes = plt.subplots(len(class_means), 1, figsize=(10, 2.4 * len(class_means)), dpi=110, sharex=True, sharey=True)
    axes = np.atleast_1d(axes)
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:red"]
    marked = {row.column: row for row in responsible.itertuples()}
    for i, (label, means) in enumerate(class_means.iterrows()):
        ax = axes[i]
        ax.bar(x, means.to_numpy(), width=1.0, color=colours[i % len(colours)], linewidth=0)
        for col, row in marked.items():
            j = columns.index(col)
            ax.axvline(j, color="black" if row.responsible_for == label else "lightgrey", linestyle="--", linewidth=0.8)
            if row.responsible_for == label:
                ax.annotate(
                    str(row.codeword).replace("Codeword", "#"),
                    (j, means.iloc[j]),
                    xytext=(2, 4),
                    textcoords="offset points",
                    fontsize=7,
                )
        ax.set_ylabel(f"{label}\nmean count", fontsize=8)
    axes[-1].set_xlabel("codeword index (dashed: responsible codeword; black in the panel of its class)")
    axes[0].set_title(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
