"""PyTorch eager baseline timings for a DiT preset (CPU by default), for comparison with the TS backends.

  .venv/bin/python tools/reference/bench_torch.py --preset DiT-XL/2 --image-size 256 --threads 2 [--ddim20]
  .venv/bin/python tools/reference/bench_torch.py --weights models/mnist-dit.safetensors --ddim20

Prints one JSON line: {preset, ms_forward_median, ms_ddim20, peak_rss_mb, gflops, ...}.
gflops = analytic FLOPs (2 * MACs) of one forward over the batch (batch 2 = one CFG pair).
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dit import PRESETS, DiT, create_diffusion, load_dit_safetensors, sample_cfg  # noqa: E402


def forward_flops(cfg: dict, batch: int) -> float:
    """2*MACs of the matmul/conv work (attention included; norms/activations ignored)."""
    D, p, C, H = cfg["hidden_size"], cfg["patch_size"], cfg["in_channels"], cfg["input_size"]
    T = (H // p) ** 2
    out_c = 2 * C if cfg.get("learn_sigma", True) else C
    hid = int(D * cfg.get("mlp_ratio", 4.0))
    macs = T * D * C * p * p  # patch embed
    macs += 256 * D + D * D  # t embedder (per sample)
    per_block = T * (3 * D * D + D * D + 2 * D * hid) + 2 * T * T * D + 6 * D * D
    macs += cfg["depth"] * per_block
    macs += T * D * p * p * out_c + 2 * D * D
    return 2.0 * macs * batch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="DiT-XL/2", choices=sorted(PRESETS))
    ap.add_argument("--image-size", type=int, default=256, help="latent = image_size // 8 (ignored with --weights)")
    ap.add_argument("--num-classes", type=int, default=1000)
    ap.add_argument("--weights", default="", help="official-layout .safetensors with __metadata__ config")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--ddim20", action="store_true", help="also time a 20-step DDIM + CFG 4.0 run (batch/2 samples)")
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    if a.weights:
        model = load_dit_safetensors(a.weights, device=a.device)
        preset = os.path.basename(a.weights)
    else:
        model = DiT(**PRESETS[a.preset], input_size=a.image_size // 8, num_classes=a.num_classes).to(a.device).eval()
        with torch.no_grad():  # non-zero adaLN/final so the work is representative
            for b in model.blocks:
                b.adaLN_modulation[1].weight.normal_(0, 0.02)
            model.final_layer.adaLN_modulation[1].weight.normal_(0, 0.02)
            model.final_layer.linear.weight.normal_(0, 0.02)
        preset = a.preset
    cfg = model.config
    C, H = cfg["in_channels"], cfg["input_size"]
    x = torch.randn(a.batch, C, H, H, device=a.device)
    t = torch.full((a.batch,), 500, dtype=torch.long, device=a.device)
    y = torch.arange(a.batch, device=a.device) % cfg["num_classes"]

    def sync():
        if a.device.startswith("cuda"):
            torch.cuda.synchronize()

    times = []
    with torch.no_grad():
        for i in range(a.warmup + a.iters):
            sync()
            t0 = time.perf_counter()
            model(x, t, y)
            sync()
            if i >= a.warmup:
                times.append((time.perf_counter() - t0) * 1e3)
    res = {"preset": preset, "input": [C, H, H], "batch": a.batch, "threads": a.threads, "torch": torch.__version__,
           "ms_forward_median": round(statistics.median(times), 3), "ms_forward_min": round(min(times), 3),
           "ms_ddim20": None, "gflops": round(forward_flops(cfg, a.batch) / 1e9, 3)}
    if a.ddim20:
        n = max(1, a.batch // 2)
        z = torch.randn(n, C, H, H, device=a.device)
        labels = torch.arange(n, device=a.device) % cfg["num_classes"]
        d = create_diffusion("ddim20")
        sync()
        t0 = time.perf_counter()
        with torch.no_grad():
            sample_cfg(model, d, z, labels, 4.0, method="ddim", guide_channels=3)
        sync()
        res["ms_ddim20"] = round((time.perf_counter() - t0) * 1e3, 1)
    res["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
