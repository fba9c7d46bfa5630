"""Reference values for @ditcache/metrics, computed independently with numpy + scipy.

Writes packages/metrics/src/__fixtures__/:
  metrics-inputs.safetensors   float32 inputs (feature sets, logits, images, a tiny classifier's
                               weights and input)
  metrics-reference.json       the expected results, computed in float64 from those float32 inputs

Run: python3 -m venv /tmp/mvenv && /tmp/mvenv/bin/pip install numpy scipy
     /tmp/mvenv/bin/python tools/metrics/make_fixtures.py
Deterministic (fixed seeds). Formulas follow the reference implementations:
  FID   pytorch-fid calculate_frechet_distance (scipy.linalg.sqrtm, np.cov), plus an
        eigh-based value for cases where sqrtm itself is inaccurate
  IS    openai/improved-gan inception_score (splits over i*N//splits slices, exp(mean KL))
  P/R   Kynkaenniemi et al. 2019, k-th nearest neighbour radii (self excluded), plain numpy
  SSIM  skimage.metrics.structural_similarity with gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False, K1=0.01, K2=0.03 (gaussian_filter truncate=3.5, 11 taps,
        crop of 5 pixels each side), averaged over channels and pixels per image
"""
import json
import os
import struct
import warnings

import numpy as np
from scipy import linalg
from scipy.ndimage import gaussian_filter
from scipy.special import log_softmax

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "..", "packages", "metrics", "src", "__fixtures__")


def write_safetensors(path, tensors, metadata=None):
    header = {}
    if metadata:
        header["__metadata__"] = metadata
    offset = 0
    blobs = []
    for name in sorted(tensors):
        arr = np.ascontiguousarray(tensors[name], dtype="<f4")
        header[name] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [offset, offset + arr.nbytes]}
        offset += arr.nbytes
        blobs.append(arr.tobytes())
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * ((8 - len(raw) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for blob in blobs:
            f.write(blob)


# ------------------------------------------------------------------ FID
def fid_pytorch_fid(mu1, sigma1, mu2, sigma2, eps=1e-6):
    """Verbatim logic of pytorch_fid.fid_score.calculate_frechet_distance."""
    diff = mu1 - mu2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # scipy 1.17 deprecates disp
        covmean, _ = linalg.sqrtm(sigma1.dot(sigma2), disp=False)
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError("Imaginary component {}".format(np.max(np.abs(covmean.imag))))
        covmean = covmean.real
    tr_covmean = np.trace(covmean)
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)


def fid_eigh(mu1, sigma1, mu2, sigma2):
    """Same distance via LAPACK eigh: tr sqrt(S1 S2) = sum sqrt eig(sqrt(S1) S2 sqrt(S1))."""
    w, v = linalg.eigh(sigma1)
    root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    m = root @ sigma2 @ root
    ev = linalg.eigvalsh((m + m.T) / 2)
    diff = mu1 - mu2
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.sqrt(np.clip(ev, 0, None)).sum())


def moments(x):
    x = x.astype(np.float64)
    return np.mean(x, axis=0), np.cov(x, rowvar=False)


# ------------------------------------------------------------------ IS
def inception_score(logits, splits):
    log_p = log_softmax(logits.astype(np.float64), axis=1)
    p = np.exp(log_p)
    n = len(p)
    scores = []
    for i in range(splits):
        part_log = log_p[i * n // splits:(i + 1) * n // splits]
        part = p[i * n // splits:(i + 1) * n // splits]
        log_py = np.log(np.mean(part, axis=0, keepdims=True))
        kl = np.sum(part * (part_log - log_py), axis=1)
        scores.append(np.exp(np.mean(kl)))
    return float(np.mean(scores)), float(np.std(scores))


# ------------------------------------------------------------------ precision / recall
def pairwise(a, b):
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))


def knn_radii(x, k):
    d = pairwise(x, x)
    return np.sort(d, axis=1)[:, k]  # index 0 is the point itself


def coverage(manifold, radii, probes):
    d = pairwise(probes, manifold)
    inside = (d <= radii[None, :]).any(axis=1)
    margin = np.min(np.abs(d - radii[None, :]) / radii[None, :])  # distance to a tie
    return float(inside.mean()), float(margin)


def precision_recall(real, fake, k):
    r_real = knn_radii(real, k)
    r_fake = knn_radii(fake, k)
    precision, m1 = coverage(real, r_real, fake)
    recall, m2 = coverage(fake, r_fake, real)
    return precision, recall, min(m1, m2)


# ------------------------------------------------------------------ PSNR / SSIM
def mse_psnr(x, y, data_range):
    x = x.astype(np.float64)
    y = y.astype(np.float64)
    mse = ((x - y) ** 2).reshape(len(x), -1).mean(axis=1)
    psnr = 10 * np.log10(data_range ** 2 / mse)
    return mse, psnr


def ssim_channel(x, y, data_range):
    sigma, truncate = 1.5, 3.5
    pad = int(truncate * sigma + 0.5)  # 5: window 11
    f = lambda z: gaussian_filter(z, sigma=sigma, truncate=truncate, mode="reflect")
    ux, uy = f(x), f(y)
    uxx, uyy, uxy = f(x * x), f(y * y), f(x * y)
    vx, vy, vxy = uxx - ux * ux, uyy - uy * uy, uxy - ux * uy
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux ** 2 + uy ** 2 + c1) * (vx + vy + c2))
    return s[pad:-pad, pad:-pad]


def ssim(x, y, data_range):
    x = x.astype(np.float64)
    y = y.astype(np.float64)
    out = []
    for i in range(len(x)):
        maps = [ssim_channel(x[i, c], y[i, c], data_range) for c in range(x.shape[1])]
        out.append(float(np.mean(maps)))
    return np.array(out)


# ------------------------------------------------------------------ tiny classifier
def conv2d(x, w, b, padding):
    n, cin, h, wd = x.shape
    cout, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    ho, wo = h + 2 * padding - kh + 1, wd + 2 * padding - kw + 1
    out = np.zeros((n, cout, ho, wo))
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i:i + ho, j:j + wo]  # n, cin, ho, wo
            out += np.einsum("nchw,oc->nohw", patch, w[:, :, i, j])
    return out + b[None, :, None, None]


def maxpool2(x):
    n, c, h, w = x.shape
    return x.reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))


TINY_LAYERS = [
    {"type": "conv2d", "name": "conv1", "in": 1, "out": 4, "kernel": 3, "padding": 1},
    {"type": "relu"},
    {"type": "maxpool2d", "kernel": 2},
    {"type": "conv2d", "name": "conv2", "in": 4, "out": 8, "kernel": 3, "padding": 1},
    {"type": "relu"},
    {"type": "maxpool2d", "kernel": 2},
    {"type": "maxpool2d", "kernel": 2},
    {"type": "flatten"},
    {"type": "linear", "name": "fc1", "in": 128, "out": 16, "features": True},
    {"type": "relu"},
    {"type": "linear", "name": "fc2", "in": 16, "out": 10},
]


def tiny_forward(params, x):
    x = x.astype(np.float64)
    p = {k: v.astype(np.float64) for k, v in params.items()}
    feats = None
    for layer in TINY_LAYERS:
        t = layer["type"]
        if t == "conv2d":
            x = conv2d(x, p[layer["name"] + ".weight"], p[layer["name"] + ".bias"], layer["padding"])
        elif t == "relu":
            x = np.maximum(x, 0)
        elif t == "maxpool2d":
            x = maxpool2(x)
        elif t == "flatten":
            x = x.reshape(len(x), -1)
        elif t == "linear":
            x = x @ p[layer["name"] + ".weight"].T + p[layer["name"] + ".bias"]
            if layer.get("features"):
                feats = x
    return feats, x


def main():
    rng = np.random.default_rng(20261129)
    tensors = {}
    ref = {"generator": "tools/metrics/make_fixtures.py", "numpy": np.__version__}

    # FID cases: (name, dim, n_a, n_b, how)
    fid = {}
    for name, dim, na, nb, kind in [
        ("dim16", 16, 300, 260, "correlated"),
        ("dim64", 64, 400, 350, "correlated"),
        ("ill_conditioned", 32, 500, 450, "ill"),
        ("rank_deficient", 48, 40, 36, "correlated"),  # fewer samples than dims: singular covariances
    ]:
        if kind == "ill":
            # Eigenvalues from 1 down to 1e-7 (condition ~1e7), mean offset large against the spread.
            q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
            scales = np.logspace(0, -3.5, dim)
            a = rng.standard_normal((na, dim)) * scales @ q.T + 5.0
            b = rng.standard_normal((nb, dim)) * (scales * 1.3) @ q.T + 5.02
        else:
            mix_a = rng.standard_normal((dim, dim)) / np.sqrt(dim)
            mix_b = mix_a + 0.3 * rng.standard_normal((dim, dim)) / np.sqrt(dim)
            a = rng.standard_normal((na, dim)) @ mix_a + rng.standard_normal(dim) * 0.5
            b = rng.standard_normal((nb, dim)) @ mix_b + rng.standard_normal(dim) * 0.5
        a = a.astype(np.float32)
        b = b.astype(np.float32)
        tensors[f"fid.{name}.a"] = a
        tensors[f"fid.{name}.b"] = b
        mu1, s1 = moments(a)
        mu2, s2 = moments(b)
        cond = float(np.linalg.cond(s1))
        fid[name] = {
            "dim": dim,
            "pytorchFid": fid_pytorch_fid(mu1, s1, mu2, s2),
            "eigh": fid_eigh(mu1, s1, mu2, s2),
            "conditionA": cond,
            "traceCovA": float(np.trace(s1)),
            "meanA": mu1.tolist() if dim <= 16 else None,
        }
    ref["fid"] = fid

    # Inception Score from logits (1000 samples, 10 classes, confident-ish)
    logits = (rng.standard_normal((1000, 10)) * 3.0).astype(np.float32)
    tensors["is.logits"] = logits
    ref["inceptionScore"] = {}
    for splits in (1, 10, 7):
        mean, std = inception_score(logits, splits)
        ref["inceptionScore"][str(splits)] = {"mean": mean, "std": std}

    # Precision / recall (k = 3 and 5)
    real = rng.standard_normal((300, 16)).astype(np.float32)
    fake = (rng.standard_normal((250, 16)) * 1.2 + 0.3).astype(np.float32)
    tensors["pr.real"] = real
    tensors["pr.fake"] = fake
    ref["precisionRecall"] = {}
    for k in (3, 5):
        p, r, margin = precision_recall(real, fake, k)
        assert margin > 1e-6, f"near tie in precision/recall fixture (margin {margin})"
        ref["precisionRecall"][str(k)] = {"precision": p, "recall": r, "tieMargin": margin}

    # Images: 3 RGB 32x32 in [-1, 1] against a perturbed copy; 2 grayscale 28x28 in [0, 1]
    ys = np.linspace(-1, 1, 32)
    base = np.sin(3 * ys[None, :, None] + 2 * ys[None, None, :] + np.arange(3)[:, None, None])
    ref_rgb = np.clip(base[None] * np.array([0.9, 0.6, 0.3])[:, None, None, None] + 0.1 * rng.standard_normal((3, 3, 32, 32)), -1, 1)
    test_rgb = np.clip(ref_rgb + rng.standard_normal(ref_rgb.shape) * np.array([0.02, 0.1, 0.3])[:, None, None, None], -1, 1)
    ref_gray = rng.uniform(0, 1, (2, 1, 28, 28))
    test_gray = np.clip(ref_gray + 0.05 * rng.standard_normal(ref_gray.shape), 0, 1)
    images = {}
    for name, x, y, data_range in [("rgb", test_rgb, ref_rgb, 2.0), ("gray", test_gray, ref_gray, 1.0)]:
        x = x.astype(np.float32)
        y = y.astype(np.float32)
        tensors[f"images.{name}.test"] = x
        tensors[f"images.{name}.reference"] = y
        mse, psnr = mse_psnr(x, y, data_range)
        images[name] = {
            "dataRange": data_range,
            "mse": mse.tolist(),
            "psnr": psnr.tolist(),
            "ssim": ssim(x, y, data_range).tolist(),
        }
    ref["images"] = images

    # Tiny classifier in the tools/train layer-list format, random weights
    params = {}
    for layer in TINY_LAYERS:
        if layer["type"] == "conv2d":
            fan_in = layer["in"] * 9
            params[layer["name"] + ".weight"] = rng.standard_normal((layer["out"], layer["in"], 3, 3)) / np.sqrt(fan_in)
            params[layer["name"] + ".bias"] = 0.1 * rng.standard_normal(layer["out"])
        elif layer["type"] == "linear":
            params[layer["name"] + ".weight"] = rng.standard_normal((layer["out"], layer["in"])) / np.sqrt(layer["in"])
            params[layer["name"] + ".bias"] = 0.1 * rng.standard_normal(layer["out"])
    params = {k: v.astype(np.float32) for k, v in params.items()}
    x = np.clip(rng.standard_normal((3, 1, 32, 32)) * 0.7, -1, 1).astype(np.float32)
    feats, logits_tiny = tiny_forward(params, x)
    write_safetensors(
        os.path.join(OUT, "tiny-classifier.safetensors"),
        params,
        # Same metadata layout as tools/train/train_classifier.py writes for the real network.
        {"architecture": json.dumps({"name": "tiny-test-classifier", "input": [1, 32, 32], "input_range": [-1, 1],
                                     "layers": TINY_LAYERS, "layout": "NCHW; conv weight [out,in,kh,kw]; linear weight [out,in]",
                                     "features": "fc1 output before ReLU (16-d)"}),
         "producer": "tools/metrics/make_fixtures.py"},
    )
    tensors["classifier.input"] = x
    ref["classifier"] = {"features": feats.ravel().tolist(), "logits": logits_tiny.ravel().tolist(), "batch": 3}

    write_safetensors(os.path.join(OUT, "metrics-inputs.safetensors"), tensors, {"generator": ref["generator"]})
    with open(os.path.join(OUT, "metrics-reference.json"), "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")
    for name, case in fid.items():
        print(f"fid {name}: pytorch-fid {case['pytorchFid']:.10g} eigh {case['eigh']:.10g} cond {case['conditionA']:.3g}")
    print("IS", ref["inceptionScore"])
    print("PR", ref["precisionRecall"])
    print("images", json.dumps(images)[:400])


if __name__ == "__main__":
    main()
