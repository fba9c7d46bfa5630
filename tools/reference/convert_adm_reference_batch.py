"""Convert an ADM (openai/guided-diffusion evaluations) reference batch to @ditcache/metrics feature stats.

  .venv/bin/python tools/reference/convert_adm_reference_batch.py VIRTUAL_imagenet256_labeled.npz \
      models/imagenet256-inception.stats.safetensors

The DiT paper's FID-50K uses ADM's evaluator against VIRTUAL_imagenet256_labeled.npz
(https://openaipublic.blob.core.windows.net/diffusion/jul-2021/ref_batches/imagenet/256/VIRTUAL_imagenet256_labeled.npz).
The .npz holds the pool_3 statistics `mu` (2048) and `sigma` (2048x2048) of ImageNet training images, computed with
the TF Inception graph; this script stores them (and the image count of `arr_0`, when present) under the feature-space
name "inception-v3-pool3", so FeatureStats.load(path, inceptionExtractor) accepts them. No extractor hash is stored:
the TF graph and pytorch-fid's port (what InceptionV3FeatureExtractor runs) agree closely but not bit for bit, so
FIDs against these stats differ slightly from ADM's evaluator's (the size of the gap was not measured here). For exact ADM numbers, run ADM's
evaluator.py on an .npz of your samples (`--save-npz` of the CLI, see docs/guides/reproduce-paper-on-gpu.md).
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ditcache_stats import write_stats  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("npz")
    ap.add_argument("output")
    ap.add_argument("--count", type=int, default=None, help="images behind the stats (default: len(arr_0), else 10000)")
    args = ap.parse_args()
    with np.load(args.npz, mmap_mode="r") as data:
        if "mu" not in data or "sigma" not in data:
            raise SystemExit(f"{args.npz}: no mu/sigma arrays (keys: {list(data.keys())}); not an ADM reference batch")
        count = args.count or (data["arr_0"].shape[0] if "arr_0" in data else 10000)
        write_stats(args.output, data["mu"], data["sigma"], count,
                    note=f"ADM reference batch {os.path.basename(args.npz)} (TF Inception pool_3)")
        dim = data["mu"].shape[0]
    print(f"wrote {args.output} (dim {dim}, count {count})")


if __name__ == "__main__":
    main()
