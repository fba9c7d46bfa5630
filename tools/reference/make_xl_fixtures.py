"""Write the small committed fixtures of the real DiT-XL/2 path (random weights, real file formats):

  .venv/bin/python tools/reference/make_xl_fixtures.py          # writes the files below
  .venv/bin/python tools/reference/make_xl_fixtures.py --check  # regenerate in memory, compare to the files

packages/dit/src/__fixtures__/diffusers/transformer/{config.json,diffusion_pytorch_model.safetensors}
    The existing tiny DiT (tiny-dit.safetensors, official layout) converted to the diffusers layout of
    facebook/DiT-XL-2-256 (per-block embedder copies, split q/k/v, no stored pos_embed); its forward output is
    tiny-dit-io.safetensors "out".
packages/vae/src/__fixtures__/tiny-vae/{config.json,diffusion_pytorch_model.safetensors}
    A random-weight AutoencoderKL decoder (block_out_channels [32, 64], layers_per_block 1, norm_num_groups 8,
    latent 4 channels) in the diffusers layout, plus a few encoder.* / quant_conv.* tensors that a decoder must
    ignore, as the real sd-vae-ft-ema / -mse files hold the whole autoencoder.
packages/vae/src/__fixtures__/tiny-vae-io.safetensors
    latents [2,4,8,8] (DiT's scale: x0 of the sampler), decoded [2,3,16,16] (no clamp), images (clamped to [-1,1])
packages/metrics/src/__fixtures__/tiny-inception.safetensors
    FID Inception-v3 with every channel count divided by 8 (same kernels/paddings/pools), random weights with
    random BatchNorm statistics, fc with 16 classes.
packages/metrics/src/__fixtures__/tiny-inception-io.safetensors
    images [2,3,32,32] in [0,1], resized to 139x139 (bilinear, align_corners=False) -> pool [2,256], logits [2,16]
"""
import argparse
import json
import os
import sys

import numpy as np
import torch
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from convert_official_dit import diffusers_config, official_to_diffusers  # noqa: E402
from fid_inception import FIDInceptionV3  # noqa: E402
from sd_vae import VaeDecoderModel  # noqa: E402

ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
DIT_DIR = os.path.join(ROOT, "packages", "dit", "src", "__fixtures__")
VAE_DIR = os.path.join(ROOT, "packages", "vae", "src", "__fixtures__")
METRICS_DIR = os.path.join(ROOT, "packages", "metrics", "src", "__fixtures__")
SEED = 4321
VAE_CONFIG = {"_class_name": "AutoencoderKL", "act_fn": "silu", "block_out_channels": [32, 64],
              "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D"], "in_channels": 3, "latent_channels": 4,
              "layers_per_block": 1, "norm_num_groups": 8, "out_channels": 3, "sample_size": 16,
              "scaling_factor": 0.18215, "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D"]}
INCEPTION_WIDTH = 8
INCEPTION_SIZE = 139


def randomize(module: torch.nn.Module, g: torch.Generator) -> None:
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.dim() > 1:
                p.copy_(torch.randn(p.shape, generator=g) / np.sqrt(np.prod(p.shape[1:])))
            elif name.endswith("weight"):  # norm scales around 1
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
        for name, b in module.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.1 * torch.randn(b.shape, generator=g))
            elif name.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=g))


def dit_files() -> dict:
    sd = load_file(os.path.join(DIT_DIR, "tiny-dit.safetensors"))
    with open(os.path.join(DIT_DIR, "tiny-dit.json")) as f:
        cfg = json.load(f)
    sd.pop("pos_embed", None)  # diffusers computes it (a non-persistent buffer)
    return {"diffusers/transformer/diffusion_pytorch_model.safetensors": official_to_diffusers(sd, cfg["depth"]),
            "diffusers/transformer/config.json": diffusers_config(cfg)}


def vae_files() -> dict:
    g = torch.Generator().manual_seed(SEED)
    model = VaeDecoderModel(VAE_CONFIG).eval()
    randomize(model, g)
    weights = {k: v.contiguous() for k, v in model.state_dict().items()}
    # the real files hold the encoder too; a decoder loader must skip these
    weights["encoder.conv_in.weight"] = torch.randn(32, 3, 3, 3, generator=g)
    weights["encoder.conv_in.bias"] = torch.zeros(32)
    weights["quant_conv.weight"] = torch.randn(8, 8, 1, 1, generator=g)
    weights["quant_conv.bias"] = torch.zeros(8)
    latents = torch.randn(2, 4, 8, 8, generator=g)
    with torch.no_grad():
        decoded = model(latents * VAE_CONFIG["scaling_factor"], clamp=False)  # model divides by the factor
        images = decoded.clamp(-1, 1)
    io = {"latents": latents * VAE_CONFIG["scaling_factor"], "decoded": decoded, "images": images}
    return {"tiny-vae/diffusion_pytorch_model.safetensors": weights, "tiny-vae/config.json": VAE_CONFIG,
            "tiny-vae-io.safetensors": {k: v.contiguous() for k, v in io.items()}}


def inception_files() -> dict:
    g = torch.Generator().manual_seed(SEED + 1)
    model = FIDInceptionV3(width=INCEPTION_WIDTH, num_classes=16).eval()
    randomize(model, g)
    weights = {k: v.contiguous() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    images = torch.rand(2, 3, 32, 32, generator=g)
    with torch.no_grad():
        pool, logits = model(images, size=INCEPTION_SIZE)
    io = {"images": images, "pool": pool, "logits": logits, "size": torch.tensor([float(INCEPTION_SIZE)])}
    return {"tiny-inception.safetensors": weights, "tiny-inception-io.safetensors": io}


def write(base: str, files: dict, check: bool) -> bool:
    ok = True
    for rel, content in files.items():
        path = os.path.join(base, rel)
        if check:
            if rel.endswith(".json"):
                with open(path) as f:
                    same = json.load(f) == content
            else:
                old = load_file(path)
                same = old.keys() == content.keys() and all(torch.equal(old[k], content[k]) for k in old)
            print(f"{'ok  ' if same else 'DIFF'} {path}")
            ok &= same
            continue
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if rel.endswith(".json"):
            with open(path, "w") as f:
                json.dump(content, f, indent=2)
                f.write("\n")
        else:
            save_file(content, path)
        print(f"wrote {path} ({os.path.getsize(path)} bytes)")
    return ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    ok = write(DIT_DIR, dit_files(), args.check)
    ok &= write(VAE_DIR, vae_files(), args.check)
    ok &= write(METRICS_DIR, inception_files(), args.check)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
