"""Write feature statistics in @ditcache/metrics' FeatureStats safetensors format (FeatureStats.load reads them).

Format: tensors mean.hi/mean.lo (dim) and covariance.hi/covariance.lo (dim x dim, unbiased), float64 values stored as
float32 pairs (value = hi + lo); metadata kind="ditcache.feature-stats", version="1", dim, count, extractor[, extractorHash].
"""
import numpy as np
from safetensors.numpy import save_file

INCEPTION_NAME = "inception-v3-pool3"  # InceptionV3FeatureExtractor's default feature-space name


def _split(x: np.ndarray):
    x = np.asarray(x, dtype=np.float64)
    hi = x.astype(np.float32)
    lo = (x - hi.astype(np.float64)).astype(np.float32)
    return np.ascontiguousarray(hi), np.ascontiguousarray(lo)


def write_stats(path: str, mu: np.ndarray, sigma: np.ndarray, count: int, extractor: str = INCEPTION_NAME,
                extractor_hash: str = None, note: str = None) -> None:
    mu = np.asarray(mu, dtype=np.float64).reshape(-1)
    sigma = np.asarray(sigma, dtype=np.float64)
    dim = mu.shape[0]
    if sigma.shape != (dim, dim):
        raise SystemExit(f"sigma has shape {sigma.shape}, expected ({dim}, {dim})")
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise SystemExit("mu/sigma contain non-finite values")
    mh, ml = _split(mu)
    ch, cl = _split(sigma)
    meta = {"kind": "ditcache.feature-stats", "version": "1", "dim": str(dim), "count": str(int(count)),
            "covariance": "unbiased (count - 1)", "encoding": "float64 values stored as float32 pairs: value = hi + lo",
            "extractor": extractor}
    if extractor_hash:
        meta["extractorHash"] = extractor_hash
    if note:
        meta["note"] = note
    save_file({"mean.hi": mh, "mean.lo": ml, "covariance.hi": ch, "covariance.lo": cl}, path, metadata=meta)
