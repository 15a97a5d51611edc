"""Speed of the ``fisher`` class (DLR, Li et al. 2017) on the LGG cases, against references measured in the same run.

Three measurements, each printed with its median and range over ``--repeats``:

1. **Per case, descriptors + Fisher encoding vs the FLOP bound.** For each of ``--cases`` LGG cases (spread
   over the range of ROI sizes), ``FisherVector.describe`` (reading, preprocessing, the ROI windows at the 10
   scales through the network) plus ``encode`` (the improved Fisher vector over a 64-component GMM). The
   reference is the network's FLOP count on exactly those windows (every Conv2d that runs, 2 x MACs, counted
   by forward hooks) divided by the float32 GEMM rate (``torch.mm`` of two 2048 x 2048 matrices on the same
   threads), measured right before each timing so that both see the same machine load. Target: time <= 2 x
   FLOPs / GEMM rate.
2. **GMM fit on ``--gmm-patients`` patients** (30, the paper's count): the class's cohort step
   (``fit_descriptors``: draw the patients, subsample ``max_descriptors`` per patient, scikit-learn's
   ``GaussianMixture(64, "diag")``), on descriptors computed beforehand. Target: under 2 minutes on 2 cores.
3. **Study overhead of fold-wise refitting** (``--study``): ``run_study`` on the labelled cases from images
   (manifest + params: one GMM fit per training fold, every case encoded per fold; descriptors already
   cached) against ``run_study`` on a fixed table of the same features (one GMM fitted on every case, which
   leaks, as the reference), same splits and model.

The network is ``--model`` (default: the shipped default bundle when it exists, else an untrained network
with the architecture of ``params/train_dlr.yaml``, seeded: speed does not depend on the weights).
Descriptor settings are those of ``params/fisher.yaml``. Run on an otherwise idle machine:

    python benchmarks/fisher_speed.py --threads 2 --repeats 3 --study
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "lgg"


def spread(values) -> str:
    values = list(values)
    return f"{statistics.median(values):.3g} [{min(values):.3g}-{max(values):.3g}]"


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def gemm_rate(torch, size: int = 2048, repeats: int = 3) -> float:
    """float32 GEMM rate in FLOP/s: the best of ``repeats`` products of two ``size`` x ``size`` matrices."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * size**3 / best


class ConvFlops:
    """Counts 2 x multiply-accumulates of every Conv2d of ``network`` that runs (forward hooks)."""

    def __init__(self, network) -> None:
        import torch

        self.flops = 0
        self.hooks = [m.register_forward_hook(self._count) for m in network.modules() if isinstance(m, torch.nn.Conv2d)]

    def _count(self, module, inputs, output) -> None:
        kh, kw = module.kernel_size
        self.flops += 2 * output.numel() * (module.in_channels // module.groups) * kh * kw

    def close(self) -> None:
        for hook in self.hooks:
            hook.remove()


def untrained_bundle(folder: Path) -> Path:
    """An untrained network with the architecture of params/train_dlr.yaml (seed 0) as a bundle."""
    import torch
    import yaml

    from deepradiomics.models import build_network, save_bundle

    config = yaml.safe_load((REPO / "params" / "train_dlr.yaml").read_text())
    channels = [m["name"] for m in config["data"]["modalities"]]
    arch = {"type": config["model"]["type"], "in_channels": len(channels), "num_classes": 2}
    arch.update({k: v for k, v in config["model"].items() if k != "type"})
    torch.manual_seed(0)
    bundle = {
        "name": "untrained-dlr-architecture",
        "architecture": arch,
        "modalities": [{"name": c} for c in channels],
        "preprocessing": {"orientation": "axial", "normalization": config["data"]["normalization"], "input_size": None, "channels": channels},
    }
    return save_bundle(build_network(arch), bundle, folder, "untrained, for timing only {sha256}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="bundle (default: the shipped default, else an untrained DLR network)")
    parser.add_argument("--cases", type=int, default=6, help="LGG cases timed one by one (spread over ROI sizes)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch and BLAS threads")
    parser.add_argument("--gmm-patients", type=int, default=30)
    parser.add_argument("--gmm-repeats", type=int, default=3)
    parser.add_argument("--max-descriptors", type=int, default=None, help="override the params file's max_descriptors")
    parser.add_argument("--study", action="store_true", help="also measure the study's fold-wise refitting overhead")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--cv-repeats", type=int, default=1)
    parser.add_argument("--study-runs", type=int, default=2, help="runs of each study (median and range)")
    parser.add_argument("--cache-dir", default=None, help="keep the descriptors here (default: a temporary folder)")
    args = parser.parse_args()

    import pandas as pd
    import torch
    import yaml
    from threadpoolctl import threadpool_limits

    from deepradiomics.batch import case_from_row, read_manifest
    from deepradiomics.extractor import describe_cases
    from deepradiomics.models import shipped_models
    from deepradiomics.registry import get_registry
    from deepradiomics.study import run_study

    torch.set_num_threads(args.threads)
    threadpool_limits(args.threads)
    work = Path(args.cache_dir or tempfile.mkdtemp(prefix="fisher-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    fisher_cls = get_registry().get("fisher")
    params = yaml.safe_load((REPO / "params" / "fisher.yaml").read_text())
    settings = dict(params["featureClass"]["fisher"])
    if args.model is not None:
        settings["model"] = args.model
    elif "dlr-lgg-cpu" not in shipped_models():
        settings["model"] = str(untrained_bundle(work / "untrained-dlr"))
    if args.max_descriptors is not None:
        settings["max_descriptors"] = args.max_descriptors
    fisher = fisher_cls(settings)
    print(f"machine: {platform.node()}, {os.cpu_count()} CPUs, load average {load()}; Python {platform.python_version()}, torch {torch.__version__}")
    print(f"threads: {args.threads} (torch and BLAS); model: {fisher.bundle.name} ({fisher.bundle.architecture}, layer {fisher.layer}, D={fisher.dimension})")
    print(f"settings: {', '.join(f'{k}={v}' for k, v in settings.items() if k != 'model')}")

    frame, base = read_manifest(DATA / "cases.csv")
    rows = {r["ID"]: r for r in frame.to_dict(orient="records")}
    labelled = [i for i, v in zip(frame["ID"], frame["idh_mutant"]) if str(v).strip() not in ("", "nan")]

    # ---------------------------------------------------------------------- 1. per case vs FLOP bound
    import SimpleITK as sitk

    sizes = {i: int((sitk.GetArrayFromImage(sitk.ReadImage(str(base / rows[i]["Mask"]))) > 0).sum()) for i in labelled}
    by_size = sorted(labelled, key=sizes.get)
    picks = [by_size[round(q * (len(by_size) - 1))] for q in np.linspace(0, 1, args.cases)]
    probe = fisher.describe(case_from_row(rows[picks[len(picks) // 2]], base))
    rng = np.random.default_rng(0)
    fisher.fit_descriptors([{"descriptors": probe["descriptors"][rng.permutation(len(probe["descriptors"]))[:20000]]}], ["probe"])
    print(f"\n1. descriptors + encoding per case vs network FLOPs / GEMM rate ({args.repeats} repeats; GMM for encoding fitted on one case)")
    print(f"{'case':<24}{'ROI vox':>8}{'descr.':>9}{'GFLOP':>8}{'describe s':>22}{'encode s':>22}{'ratio':>22}")
    all_ratios = []
    for case_id in picks:
        counter = ConvFlops(fisher.bundle.model)
        fisher.describe(case_from_row(rows[case_id], base))  # counts the FLOPs (and warms the kernels)
        counter.close()
        describe_times, encode_times, ratios = [], [], []
        for _ in range(args.repeats):
            rate = gemm_rate(torch)
            case = case_from_row(rows[case_id], base)
            t0 = time.perf_counter()
            described = fisher.describe(case)
            t1 = time.perf_counter()
            fisher.encode(described)
            t2 = time.perf_counter()
            describe_times.append(t1 - t0)
            encode_times.append(t2 - t1)
            ratios.append((t2 - t0) / (counter.flops / rate))
        all_ratios += ratios
        print(
            f"{case_id:<24}{sizes[case_id]:>8}{len(described['descriptors']):>9}{counter.flops / 1e9:>8.1f}"
            f"{spread(describe_times):>22}{spread(encode_times):>22}{spread(ratios):>22}"
        )
    print(f"ratio (describe + encode) / (FLOPs / GEMM rate): median {spread(all_ratios)}; target <= 2: "
          f"{'met' if statistics.median(all_ratios) <= 2 else 'NOT met'}; GEMM rate now {gemm_rate(torch) / 1e9:.1f} GFLOP/s")

    # ---------------------------------------------------------------------- 2. GMM fit on 30 patients
    draw = np.random.default_rng(0).choice(len(labelled), size=min(args.gmm_patients, len(labelled)), replace=False)
    patients = [labelled[i] for i in sorted(draw)]
    t0 = time.perf_counter()
    described = describe_cases(fisher, frame[frame["ID"].isin(patients)], cache_dir=work, base_dir=base)
    describe_total = time.perf_counter() - t0
    fresh = fisher_cls({**settings, "gmm_patients": len(patients)})
    fit_times = []
    for _ in range(args.gmm_repeats):
        t0 = time.perf_counter()
        fresh.fit_descriptors(list(described.values()), list(described))
        fit_times.append(time.perf_counter() - t0)
    pooled = sum(min(len(d["descriptors"]), settings.get("max_descriptors") or 10**12) for d in described.values())
    print(f"\n2. GMM fit on {len(patients)} patients: {pooled} descriptors (<= {settings.get('max_descriptors')} per patient), "
          f"K={fresh.settings.components}, D={fresh.dimension}")
    print(f"   describing them: {describe_total:.1f} s (cached for later runs in {work})")
    print(f"   fit: {spread(fit_times)} s over {args.gmm_repeats} runs; target < 120 s on 2 cores: "
          f"{'met' if statistics.median(fit_times) < 120 else 'NOT met'} (on {args.threads} thread(s))")

    # ---------------------------------------------------------------------- 3. study overhead
    if args.study:
        manifest = work / "labelled.csv"
        subset = frame[frame["ID"].isin(labelled)].copy()
        for column in [c for c in subset.columns if c in ("Image", "Mask") or c.startswith("Image_")]:
            subset[column] = [str(base / p) for p in subset[column]]
        subset.to_csv(manifest, index=False)
        params_file = work / "fisher.yaml"
        params_file.write_text(yaml.safe_dump({"featureClass": {"fisher": settings}}))
        t0 = time.perf_counter()
        everyone = describe_cases(fisher, manifest, cache_dir=work)
        describe_all = time.perf_counter() - t0
        t0 = time.perf_counter()
        fixed = fisher_cls(settings).fit_descriptors(list(everyone.values()), list(everyone))
        names = fixed.feature_names()
        encoded = {i: fixed.encode(everyone[i]) for i in everyone}  # once per case
        table = pd.DataFrame([[encoded[i][n] for n in names] for i in everyone], index=pd.Index(list(everyone), name="ID"), columns=[f"original_fisher_{n}" for n in names])
        table_build = time.perf_counter() - t0
        common = {"target": "idh_mutant", "models": ["dlr"], "folds": args.folds, "repeats": args.cv_repeats, "responsible": False, "n_boot": 200}
        table_times, fold_times, info = [], [], None
        for _ in range(args.study_runs):
            t0 = time.perf_counter()
            run_study(table, labels=manifest, **common)
            table_times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            result = run_study(manifest=manifest, params=params_file, cache_dir=work, **common)
            fold_times.append(time.perf_counter() - t0)
            info = result.info["foldwise"]
        ratio = [f / t for f, t in zip(fold_times, table_times)]
        print(f"\n3. study of idh_mutant on {len(everyone)} labelled cases, model dlr, {args.folds}-fold x {args.cv_repeats} ({args.study_runs} runs each)")
        print(f"   describing every case once: {describe_all:.1f} s (from the cache when it ran before); building the fixed table "
              f"(one GMM on all cases, leaky): {table_build:.1f} s")
        print(f"   study on the fixed table: {spread(table_times)} s; from images, GMM refitted per fold: {spread(fold_times)} s")
        print(f"   fold-wise / fixed-table study time: {spread(ratio)}; overhead {spread([f - t for f, t in zip(fold_times, table_times)])} s "
              f"({info['fits']} GMM fits, {info['fit_seconds']:.1f} s fitting, {info['encode_seconds']:.1f} s encoding in the last run)")
    print(f"\nload average after: {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
