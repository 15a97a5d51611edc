"""Cost of deepradiomics' input verification (full decompression + checksum) against SimpleITK's own read.

Usage: .venv/bin/python benchmarks/gzip_check_cost.py ../shared/data/lgg params/classical.yaml
Prints (1) the time to verify every input file of the LGG cases vs the time SimpleITK needs to read them
(3 interleaved rounds, medians with min/max), (2) the share of a classical extraction spent on the check of
the two files it reads (16 cases).
"""

import statistics
import sys
import time
from pathlib import Path

import pandas as pd
import SimpleITK as sitk

from deepradiomics import Extractor
from deepradiomics.batch import case_from_row, read_manifest
from deepradiomics.case import verify_image_file

root, params = Path(sys.argv[1]), sys.argv[2]
frame = pd.read_csv(root / "cases.csv", dtype=str)
files = sorted({root / p for c in ("Image", "Mask", "Image_t1", "Image_t1ce", "Image_flair") for p in frame[c]})
sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
rounds = {"verify": [], "read": []}
for _ in range(3):
    for name, step in (("verify", verify_image_file), ("read", lambda p: sitk.ReadImage(str(p)))):
        started = time.perf_counter()
        for path in files:
            step(path)
        rounds[name].append(time.perf_counter() - started)
size = sum(f.stat().st_size for f in files)
print(f"{len(files)} files ({size / 1e6:.1f} MB compressed) of {len(frame)} cases")
for name, values in rounds.items():
    print(f"{name}: median {statistics.median(values):.2f} s (min {min(values):.2f}, max {max(values):.2f}) over 3 rounds")
ratios = [v / r for v, r in zip(rounds["verify"], rounds["read"])]
print(f"verify / read: median {statistics.median(ratios):.2f} (min {min(ratios):.2f}, max {max(ratios):.2f})")

manifest, base = read_manifest(root / "cases.csv")
extractor = Extractor.from_yaml(params)
shares = []
for row in manifest.head(16).to_dict(orient="records"):
    case = case_from_row(row, base)
    checks = []
    for _ in range(3):
        started = time.perf_counter()
        for path in (case.modalities["Image"], case.mask):
            verify_image_file(path)
        checks.append(time.perf_counter() - started)
    started = time.perf_counter()
    extractor.compute(case)  # includes the check once
    shares.append(min(checks) / (time.perf_counter() - started))
print(f"classical extraction ({params}, 16 cases): the check of its two files is a median {statistics.median(shares) * 100:.1f}% "
      f"of the case's time (min {min(shares) * 100:.1f}%, max {max(shares) * 100:.1f}%)")
