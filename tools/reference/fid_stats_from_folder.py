"""Reference feature stats of a folder of images (PNG/JPEG) with the FID Inception, in PyTorch (GPU if present).

  .venv/bin/python tools/reference/fid_stats_from_folder.py IMAGE_DIR models/pt_inception-2015-12-05.safetensors \
      out.stats.safetensors [--batch-size 64] [--device cuda]

Images are read with Pillow as RGB in [0, 1], resized to 299 (bilinear, align_corners=False) and mapped to pool3, as
pytorch-fid does; mean and unbiased covariance are written in @ditcache/metrics' FeatureStats format under
"inception-v3-pool3". The TypeScript InceptionV3FeatureExtractor computes the same features (parity-tested on a
narrow random twin); this script is for large folders on a GPU machine.
"""
import argparse
import os
import sys

import numpy as np
import torch
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ditcache_stats import write_stats  # noqa: E402
from fid_inception import FIDInceptionV3  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder")
    ap.add_argument("weights")
    ap.add_argument("output")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    from PIL import Image  # only this script needs Pillow

    files = sorted(f for f in os.listdir(args.folder) if f.lower().endswith((".png", ".jpg", ".jpeg")))
    if len(files) < 2:
        raise SystemExit(f"{args.folder}: need at least 2 images, found {len(files)}")
    sd = load_file(args.weights)
    model = FIDInceptionV3(width=1, num_classes=sd["fc.weight"].shape[0])
    model.load_state_dict(sd, strict=False)
    model = model.eval().to(args.device)
    feats = []
    for start in range(0, len(files), args.batch_size):
        batch = [np.asarray(Image.open(os.path.join(args.folder, f)).convert("RGB"), dtype=np.float32) / 255.0
                 for f in files[start:start + args.batch_size]]
        x = torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).to(args.device)
        with torch.no_grad():
            feats.append(model(x)[0].double().cpu().numpy())
        print(f"{min(start + args.batch_size, len(files))}/{len(files)}", end="\r", file=sys.stderr)
    f = np.concatenate(feats)
    write_stats(args.output, f.mean(0), np.cov(f, rowvar=False), f.shape[0],
                note=f"{len(files)} images of {os.path.abspath(args.folder)}")
    print(f"\nwrote {args.output} ({f.shape[0]} images)")


if __name__ == "__main__":
    main()
