"""Write the committed parity fixtures for packages/dit (TypeScript DiT) from tools/reference/dit.py.

  .venv/bin/python tools/reference/make_fixtures.py            # writes packages/dit/src/__fixtures__/
  .venv/bin/python tools/reference/make_fixtures.py --check    # regenerate in memory, compare bitwise to files

Files (all tensors float32, official DiT key layout for the weights):
  tiny-dit.safetensors   random-weight DiT: depth 2, hidden 64, 4 heads, patch 2, 8x8x4 input, learn_sigma,
                         10 classes (+1 null row). All weights random and non-zero (adaLN/final too).
  tiny-dit.json          config
  tiny-dit-io.safetensors
      x [2,4,8,8], t [2] (999, 500), y [2] (labels as float32), out [2,8,8,8] (forward, eval mode)
      block{i}.attn / block{i}.mlp  [2,T,D] pre-gate branch outputs: attn(modulate(norm1(x))), mlp(modulate(norm2(x')))
      block{i}.out                  [2,T,D] block output
      ddim.*  respacing "ddim10" (timesteps 900..0), eta 0, CFG 4.0 guiding the first 3 channels (official),
              labels [3,7]; ddim.noise = z [2,4,8,8] (the CFG batch is [z; z] with labels [3,7,10,10]);
              ddim.x.{k} = cond-half x after loop step k (k = 0..9, k=0 is the t=900 step); ddim.samples = ddim.x.9
              ddim.timestep_map = original timesteps of the spaced steps (ascending)
      ddpm.*  respacing "10" (timesteps 0,111,...,999), same CFG/labels, ddpm.noise = z,
              ddpm.step_noise.{k} [2,4,8,8] = noise used at loop step k for the cond half (tiled to [n; n] for the
              CFG batch; the uncond half is never read by forward_with_cfg); the last step (t=0) adds no noise.
              ddpm.x.{k}, ddpm.samples, ddpm.timestep_map
"""
import argparse
import json
import os
import sys

import numpy as np
import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from dit import DiT, create_diffusion, sample_cfg  # noqa: E402

ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
OUT_DIR = os.path.join(ROOT, "packages", "dit", "src", "__fixtures__")
CONFIG = dict(input_size=8, patch_size=2, in_channels=4, hidden_size=64, depth=2, num_heads=4, mlp_ratio=4.0,
              num_classes=10, learn_sigma=True, class_dropout_prob=0.1)
SEED = 1234
CFG_SCALE = 4.0


def make_model() -> DiT:
    torch.manual_seed(SEED)
    m = DiT(**CONFIG)  # official init (pos_embed sin-cos), then overwrite everything learnable with random values
    g = torch.Generator().manual_seed(SEED)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name == "pos_embed":
                continue
            if name.endswith("embedding_table.weight"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
            elif name.endswith("weight"):
                fan_in = int(np.prod(p.shape[1:]))
                p.copy_(torch.randn(p.shape, generator=g) / np.sqrt(fan_in))
            else:  # biases
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
        # keep adaLN gates/scales O(0.3) so the residual stream stays well-conditioned
        for b in m.blocks:
            b.adaLN_modulation[1].weight.mul_(0.3)
        m.final_layer.adaLN_modulation[1].weight.mul_(0.3)
    return m.eval()


def compute(model: DiT) -> dict:
    g = torch.Generator().manual_seed(SEED + 1)
    C, H = CONFIG["in_channels"], CONFIG["input_size"]
    x = torch.randn(2, C, H, H, generator=g)
    t = torch.tensor([999, 500], dtype=torch.long)
    y = torch.tensor([3, 7], dtype=torch.long)
    out = {"x": x, "t": t.float(), "y": y.float()}
    with torch.no_grad():
        cap = []
        out["out"] = model(x, t, y, capture=cap)
        for i, rec in enumerate(cap):
            out[f"block{i}.attn"] = rec["attn"]
            out[f"block{i}.mlp"] = rec["mlp"]
            out[f"block{i}.out"] = rec["out"]

    labels = torch.tensor([3, 7], dtype=torch.long)
    # DDIM 10 steps, eta 0, CFG 4 (first 3 channels)
    z = torch.randn(2, C, H, H, generator=g)
    d = create_diffusion("ddim10")
    traj = []
    s = sample_cfg(model, d, z, labels, CFG_SCALE, method="ddim", eta=0.0, guide_channels=3, trajectory=traj)
    out["ddim.noise"] = z
    out["ddim.labels"] = labels.float()
    out["ddim.timestep_map"] = torch.tensor(d.timestep_map, dtype=torch.float32)
    for k, xk in enumerate(traj):
        out[f"ddim.x.{k}"] = xk
    out["ddim.samples"] = s
    # DDPM on respacing "10" with injected step noise
    z2 = torch.randn(2, C, H, H, generator=g)
    d2 = create_diffusion("10")
    step_noise = [torch.randn(2, C, H, H, generator=g) for _ in range(d2.num_timesteps)]
    traj2 = []
    s2 = sample_cfg(model, d2, z2, labels, CFG_SCALE, method="ddpm", guide_channels=3, step_noise=step_noise,
                    trajectory=traj2)
    out["ddpm.noise"] = z2
    out["ddpm.labels"] = labels.float()
    out["ddpm.timestep_map"] = torch.tensor(d2.timestep_map, dtype=torch.float32)
    for k, n in enumerate(step_noise):
        out[f"ddpm.step_noise.{k}"] = n
    for k, xk in enumerate(traj2):
        out[f"ddpm.x.{k}"] = xk
    out["ddpm.samples"] = s2
    return {k: v.detach().to(torch.float32).clone().contiguous() for k, v in out.items()}


def float64_deviation(model: DiT, io32: dict) -> dict:
    """Same computation in float64 (model + inputs); max |f32 - f64| per tensor group: guides TS tolerances."""
    m64 = make_model().double()
    dev = {}
    with torch.no_grad():
        cap = []
        o = m64(io32["x"].double(), io32["t"].long(), io32["y"].long(), capture=cap)
        dev["out"] = (o.float() - io32["out"]).abs().max().item()
        dev["blocks"] = max((r[k].float() - io32[f"block{i}.{k}"]).abs().max().item()
                            for i, r in enumerate(cap) for k in ("attn", "mlp", "out"))
        labels = io32["ddim.labels"].long()
        s = sample_cfg(m64, create_diffusion("ddim10"), io32["ddim.noise"].double(), labels, CFG_SCALE,
                       method="ddim", guide_channels=3)
        dev["ddim.samples"] = (s.float() - io32["ddim.samples"]).abs().max().item()
        sn = [io32[f"ddpm.step_noise.{k}"].double() for k in range(10)]
        s = sample_cfg(m64, create_diffusion("10"), io32["ddpm.noise"].double(), labels, CFG_SCALE,
                       method="ddpm", guide_channels=3, step_noise=sn)
        dev["ddpm.samples"] = (s.float() - io32["ddpm.samples"]).abs().max().item()
    return dev


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=OUT_DIR)
    ap.add_argument("--check", action="store_true", help="compare a regeneration against the files on disk")
    a = ap.parse_args()
    from safetensors.torch import load_file, save_file

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    model = make_model()
    weights = {k: v.detach().float().contiguous() for k, v in model.state_dict().items()}
    io = compute(model)
    # determinism: a second full regeneration must be bit-identical
    model_b = make_model()
    io_b = compute(model_b)
    for k in io:
        assert torch.equal(io[k], io_b[k]), f"non-deterministic: {k}"
    for k, v in model_b.state_dict().items():
        assert torch.equal(weights[k], v), f"non-deterministic weight: {k}"

    if a.check:
        w_disk = load_file(os.path.join(a.out, "tiny-dit.safetensors"))
        io_disk = load_file(os.path.join(a.out, "tiny-dit-io.safetensors"))
        bad = [k for k in weights if not torch.equal(weights[k], w_disk[k])]
        bad += [k for k in io if not torch.equal(io[k], io_disk[k])]
        print("check:", "OK (bit-identical)" if not bad else f"MISMATCH {bad}")
        sys.exit(1 if bad else 0)

    os.makedirs(a.out, exist_ok=True)
    meta_common = {"producer": "tools/reference/make_fixtures.py (reference: tools/reference/dit.py, "
                               "facebookresearch/DiT semantics)",
                   "torch": torch.__version__, "seed": str(SEED), "config": json.dumps(CONFIG)}
    save_file(weights, os.path.join(a.out, "tiny-dit.safetensors"),
              metadata={**meta_common, "format": "official DiT state_dict keys, float32, random non-zero weights"})
    with open(os.path.join(a.out, "tiny-dit.json"), "w") as f:
        json.dump(CONFIG, f, indent=2)
        f.write("\n")
    dev64 = float64_deviation(model, io)
    io_meta = {**meta_common,
               "forward": "model.eval() forward(x, t.long(), y.long()); block{i}.attn/mlp are pre-gate branch outputs",
               "ddim": f"create_diffusion('ddim10'), eta 0, clip_denoised False, CFG {CFG_SCALE} on first 3 channels "
                       "(official forward_with_cfg), labels [3,7], null label 10; x.{k} after loop step k (cond half)",
               "ddpm": f"create_diffusion('10'), p_sample, clip_denoised False, CFG {CFG_SCALE} first 3 channels; "
                       "step_noise.{k} used at loop step k, tiled [n; n] over the CFG batch",
               "float64_max_abs_dev": json.dumps(dev64)}
    save_file(io, os.path.join(a.out, "tiny-dit-io.safetensors"), metadata=io_meta)

    total = 0
    for fn in ("tiny-dit.safetensors", "tiny-dit.json", "tiny-dit-io.safetensors"):
        sz = os.path.getsize(os.path.join(a.out, fn))
        total += sz
        print(f"{fn}: {sz} bytes")
    print(f"total {total} bytes ({total / 1024:.1f} KiB)")
    print("max |value| per tensor:")
    for k, v in io.items():
        print(f"  {k:24s} {tuple(v.shape)!s:18s} {v.abs().max().item():.5g}")
    print("float32 vs float64 max abs deviation:", dev64)
    print("timestep maps: ddim10", io["ddim.timestep_map"].long().tolist(), " '10'", io["ddpm.timestep_map"].long().tolist())


if __name__ == "__main__":
    main()
