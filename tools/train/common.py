"""Shared helpers for tools/train (torch + numpy only; pillow/matplotlib optional)."""
import json
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATA = os.path.join(HERE, "data", "mnist.npz")
sys.path.insert(0, os.path.join(HERE, "..", "reference"))


def log(*a):
    print(*a, flush=True)


def load_mnist(path=DEFAULT_DATA, device="cpu"):
    """Returns dict of tensors on device: x_train/x_held [N,1,32,32] float32 in [-1,1] (28x28 padded 2px with
    background -1), y_train/y_held int64."""
    if not os.path.exists(path):
        raise SystemExit(f"{path} missing: run tools/train/export_mnist.py first (see tools/train/README.md)")
    d = np.load(path)
    imgs = torch.from_numpy(d["images"].astype(np.float32) / 127.5 - 1.0)  # [N,28,28]
    imgs = F.pad(imgs, (2, 2, 2, 2), value=-1.0).unsqueeze(1)  # [N,1,32,32]
    labels = torch.from_numpy(d["labels"].astype(np.int64))
    tr = torch.from_numpy(d["train_idx"]).long()
    he = torch.from_numpy(d["heldout_idx"]).long()
    return {
        "x_train": imgs[tr].to(device), "y_train": labels[tr].to(device),
        "x_held": imgs[he].to(device), "y_held": labels[he].to(device),
    }


def random_shift(x: torch.Tensor, max_shift: int = 2, generator=None) -> torch.Tensor:
    """Per-sample integer translation in [-max_shift, max_shift]^2, filling with -1 (background). No flips."""
    if max_shift <= 0:
        return x
    B, C, H, W = x.shape
    p = max_shift
    xp = F.pad(x, (p, p, p, p), value=-1.0)
    off = torch.randint(0, 2 * p + 1, (B, 2), device=x.device, generator=generator)
    ar_h = torch.arange(H, device=x.device)
    ar_w = torch.arange(W, device=x.device)
    iy = (ar_h[None, :] + off[:, :1])  # [B,H]
    ix = (ar_w[None, :] + off[:, 1:])  # [B,W]
    b = torch.arange(B, device=x.device)[:, None, None]
    out = xp.permute(0, 2, 3, 1)[b, iy[:, :, None], ix[:, None, :]]  # [B,H,W,C]
    return out.permute(0, 3, 1, 2).contiguous()


def save_grid_png(x: torch.Tensor, path: str, nrow: int = 10, scale: int = 2, pad: int = 2) -> bool:
    """x: [N,1,H,W] in [-1,1]. Writes a grayscale PNG (pillow, else matplotlib). Returns success."""
    x = ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu().numpy()[:, 0]
    n, h, w = x.shape
    ncol = nrow
    nrows = (n + ncol - 1) // ncol
    grid = np.full((nrows * (h + pad) + pad, ncol * (w + pad) + pad), 128, np.uint8)
    for i in range(n):
        r, c = divmod(i, ncol)
        grid[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = x[i]
    grid = np.kron(grid, np.ones((scale, scale), np.uint8))
    try:
        from PIL import Image

        Image.fromarray(grid, mode="L").save(path)
        return True
    except Exception:
        pass
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        plt.imsave(path, grid, cmap="gray", vmin=0, vmax=255)
        return True
    except Exception:
        np.save(path.replace(".png", ".npy"), grid)
        log(f"(no pillow/matplotlib: wrote {path.replace('.png', '.npy')} instead of {path})")
        return False


def plot_loss(csv_path: str, png_path: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:
        return False
    rows = np.genfromtxt(csv_path, delimiter=",", names=True)
    if rows.size < 2:
        return False
    fig, ax = plt.subplots(figsize=(7, 4))
    for k in ("loss", "mse", "vb"):
        if k in rows.dtype.names:
            ax.plot(rows["step"], rows[k], label=k)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return True


# ---------------------------------------------------------------------------------------------
# Digit classifier (built from a plain layer list so a TypeScript loader can rebuild it)
# ---------------------------------------------------------------------------------------------

CLASSIFIER_LAYERS = [
    {"type": "conv2d", "name": "conv1", "in": 1, "out": 32, "kernel": 3, "padding": 1},
    {"type": "relu"},
    {"type": "conv2d", "name": "conv2", "in": 32, "out": 32, "kernel": 3, "padding": 1},
    {"type": "relu"},
    {"type": "maxpool2d", "kernel": 2},  # 16x16
    {"type": "conv2d", "name": "conv3", "in": 32, "out": 64, "kernel": 3, "padding": 1},
    {"type": "relu"},
    {"type": "conv2d", "name": "conv4", "in": 64, "out": 64, "kernel": 3, "padding": 1},
    {"type": "relu"},
    {"type": "maxpool2d", "kernel": 2},  # 8x8
    {"type": "conv2d", "name": "conv5", "in": 64, "out": 128, "kernel": 3, "padding": 1},
    {"type": "relu"},
    {"type": "maxpool2d", "kernel": 2},  # 4x4
    {"type": "flatten"},  # NCHW order -> 2048
    {"type": "linear", "name": "fc1", "in": 2048, "out": 128, "features": True},
    {"type": "relu"},
    {"type": "linear", "name": "fc2", "in": 128, "out": 10},
]


class Classifier(nn.Module):
    def __init__(self, layers=CLASSIFIER_LAYERS):
        super().__init__()
        self.layers_spec = layers
        for L in layers:
            if L["type"] == "conv2d":
                self.add_module(L["name"], nn.Conv2d(L["in"], L["out"], L["kernel"], padding=L["padding"]))
            elif L["type"] == "linear":
                self.add_module(L["name"], nn.Linear(L["in"], L["out"]))

    def forward(self, x, return_features=False):
        feats = None
        for L in self.layers_spec:
            t = L["type"]
            if t in ("conv2d", "linear"):
                x = getattr(self, L["name"])(x)
                if L.get("features"):
                    feats = x
            elif t == "relu":
                x = F.relu(x)
            elif t == "maxpool2d":
                x = F.max_pool2d(x, L["kernel"])
            elif t == "flatten":
                x = x.flatten(1)
            elif t == "gap":
                x = x.mean(dim=(2, 3))
            else:
                raise ValueError(t)
        return (x, feats) if return_features else x


def load_classifier(path: str, device="cpu") -> Classifier:
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(path, framework="pt") as f:
        meta = f.metadata() or {}
    arch = json.loads(meta["architecture"])
    m = Classifier(arch["layers"])
    m.load_state_dict({k: v.float() for k, v in load_file(path).items()}, strict=True)
    return m.to(device).eval()
