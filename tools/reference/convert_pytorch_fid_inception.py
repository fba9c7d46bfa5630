"""Convert pytorch-fid's FID Inception weights to safetensors for @ditcache/metrics' InceptionV3FeatureExtractor.

  .venv/bin/python tools/reference/convert_pytorch_fid_inception.py pt_inception-2015-12-05-6726825d.pth \
      models/pt_inception-2015-12-05.safetensors [--check]

Weights: https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth
(the TF 2015-12-05 Inception graph FID is defined with, ported to PyTorch). The state-dict names are kept
(Conv2d_1a_3x3.conv.weight, .bn.weight/.bn.bias/.bn.running_mean/.bn.running_var, Mixed_5b..., fc.*); BatchNorm is
folded at load time in TypeScript. `--check` loads the result into tools/reference/fid_inception.py's FIDInceptionV3
(strict) and prints the pool3 features of a fixed image, to compare with InceptionV3FeatureExtractor.
"""
import argparse
import os
import sys

import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fid_inception import FIDInceptionV3  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("pth")
    ap.add_argument("output")
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    sd = torch.load(args.pth, map_location="cpu", weights_only=True)
    sd = {k: v.float().contiguous() for k, v in sd.items()
          if not k.endswith("num_batches_tracked") and not k.startswith("AuxLogits.")}
    model = FIDInceptionV3(width=1, num_classes=sd["fc.weight"].shape[0]).eval()
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise SystemExit(f"not the FID Inception state dict: missing {missing[:5]}, unexpected {unexpected[:5]}")
    save_file(sd, args.output, metadata={"source": os.path.basename(args.pth), "network": "pytorch-fid FIDInceptionV3"})
    print(f"wrote {args.output}: {len(sd)} tensors")
    if args.check:
        g = torch.Generator().manual_seed(0)
        images = torch.rand(1, 3, 256, 256, generator=g)
        with torch.no_grad():
            pool, logits = model(images)
        print("pool3[:8] of torch.rand(1,3,256,256, seed 0):", pool[0, :8].tolist())


if __name__ == "__main__":
    main()
