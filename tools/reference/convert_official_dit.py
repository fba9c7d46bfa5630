"""Convert the official facebookresearch/DiT checkpoint (a torch state_dict, e.g. DiT-XL-2-256x256.pt) to
safetensors for @ditcache/dit, with the DiT config stored in __metadata__["config"].

  .venv/bin/python tools/reference/convert_official_dit.py DiT-XL-2-256x256.pt models/DiT-XL-2-256.safetensors
  .venv/bin/python tools/reference/convert_official_dit.py DiT-XL-2-512x512.pt out.safetensors --image-size 512
  .venv/bin/python tools/reference/convert_official_dit.py ckpt.pt out.safetensors --model DiT-B/4 --num-classes 1000

The official checkpoints are downloaded by DiT's download.py from
https://dl.fbaipublicfiles.com/DiT/models/DiT-XL-2-256x256.pt (and -512x512.pt). A training checkpoint
({"model":..., "ema":..., ...}) is accepted too: its "ema" weights are used, as DiT's sample.py does.

`--diffusers DIR` instead writes the diffusers layout (DIR/config.json + DIR/diffusion_pytorch_model.safetensors,
as in facebook/DiT-XL-2-256/transformer), with per-block copies of the timestep/class embedders.
"""
import argparse
import json
import os
import re
from typing import Dict

import torch
from safetensors.torch import save_file

# depth, hidden size, heads of the official presets (DiT models.py)
PRESETS = {"S": (12, 384, 6), "B": (12, 768, 12), "L": (24, 1024, 16), "XL": (28, 1152, 16)}


def official_config(model: str, image_size: int, num_classes: int, learn_sigma: bool = True) -> dict:
    m = re.fullmatch(r"DiT-(S|B|L|XL)/(2|4|8)", model)
    if m is None:
        raise SystemExit(f"--model: expected DiT-{{S,B,L,XL}}/{{2,4,8}}, got {model!r}")
    depth, hidden, heads = PRESETS[m.group(1)]
    if image_size % 8 != 0:
        raise SystemExit(f"--image-size: expected a multiple of 8, got {image_size}")
    return dict(input_size=image_size // 8, patch_size=int(m.group(2)), in_channels=4, hidden_size=hidden,
                depth=depth, num_heads=heads, mlp_ratio=4.0, num_classes=num_classes, learn_sigma=learn_sigma,
                class_dropout_prob=0.1)


def load_state_dict(path: str) -> Dict[str, torch.Tensor]:
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(ckpt, dict) and "ema" in ckpt:
        ckpt = ckpt["ema"]
    elif isinstance(ckpt, dict) and "model" in ckpt and isinstance(ckpt["model"], dict):
        ckpt = ckpt["model"]
    return {k: v.detach().float().contiguous() for k, v in ckpt.items()}


def official_to_diffusers(sd: Dict[str, torch.Tensor], depth: int) -> Dict[str, torch.Tensor]:
    """Official DiT keys -> diffusers Transformer2DModel (norm_type "ada_norm_zero") keys. Every block gets its own
    copy of the timestep and class embedders, as the diffusers conversion does."""
    out = {"pos_embed.proj.weight": sd["x_embedder.proj.weight"], "pos_embed.proj.bias": sd["x_embedder.proj.bias"]}
    for i in range(depth):
        b, o = f"transformer_blocks.{i}", f"blocks.{i}"
        emb = f"{b}.norm1.emb"
        out[f"{emb}.timestep_embedder.linear_1.weight"] = sd["t_embedder.mlp.0.weight"].clone()
        out[f"{emb}.timestep_embedder.linear_1.bias"] = sd["t_embedder.mlp.0.bias"].clone()
        out[f"{emb}.timestep_embedder.linear_2.weight"] = sd["t_embedder.mlp.2.weight"].clone()
        out[f"{emb}.timestep_embedder.linear_2.bias"] = sd["t_embedder.mlp.2.bias"].clone()
        out[f"{emb}.class_embedder.embedding_table.weight"] = sd["y_embedder.embedding_table.weight"].clone()
        out[f"{b}.norm1.linear.weight"] = sd[f"{o}.adaLN_modulation.1.weight"]
        out[f"{b}.norm1.linear.bias"] = sd[f"{o}.adaLN_modulation.1.bias"]
        for name, w, bias in zip(("to_q", "to_k", "to_v"), sd[f"{o}.attn.qkv.weight"].chunk(3, 0),
                                 sd[f"{o}.attn.qkv.bias"].chunk(3, 0)):
            out[f"{b}.attn1.{name}.weight"] = w.contiguous()
            out[f"{b}.attn1.{name}.bias"] = bias.contiguous()
        out[f"{b}.attn1.to_out.0.weight"] = sd[f"{o}.attn.proj.weight"]
        out[f"{b}.attn1.to_out.0.bias"] = sd[f"{o}.attn.proj.bias"]
        out[f"{b}.ff.net.0.proj.weight"] = sd[f"{o}.mlp.fc1.weight"]
        out[f"{b}.ff.net.0.proj.bias"] = sd[f"{o}.mlp.fc1.bias"]
        out[f"{b}.ff.net.2.weight"] = sd[f"{o}.mlp.fc2.weight"]
        out[f"{b}.ff.net.2.bias"] = sd[f"{o}.mlp.fc2.bias"]
    out["proj_out_1.weight"] = sd["final_layer.adaLN_modulation.1.weight"]
    out["proj_out_1.bias"] = sd["final_layer.adaLN_modulation.1.bias"]
    out["proj_out_2.weight"] = sd["final_layer.linear.weight"]
    out["proj_out_2.bias"] = sd["final_layer.linear.bias"]
    return {k: v.contiguous() for k, v in out.items()}


def diffusers_config(cfg: dict) -> dict:
    """The transformer/config.json diffusers writes for a DiT (Transformer2DModel, ada_norm_zero)."""
    c = cfg["in_channels"]
    return {
        "_class_name": "Transformer2DModel",
        "activation_fn": "gelu-approximate",
        "attention_bias": True,
        "attention_head_dim": cfg["hidden_size"] // cfg["num_heads"],
        "cross_attention_dim": None,
        "dropout": 0.0,
        "in_channels": c,
        "norm_elementwise_affine": False,
        "norm_num_groups": 32,
        "norm_type": "ada_norm_zero",
        "num_attention_heads": cfg["num_heads"],
        "num_embeds_ada_norm": cfg["num_classes"],
        "num_layers": cfg["depth"],
        "num_vector_embeds": None,
        "only_cross_attention": False,
        "out_channels": 2 * c if cfg["learn_sigma"] else c,
        "patch_size": cfg["patch_size"],
        "sample_size": cfg["input_size"],
        "upcast_attention": False,
        "use_linear_projection": False,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", help="official .pt state_dict (e.g. DiT-XL-2-256x256.pt)")
    ap.add_argument("output", nargs="?", help="output .safetensors (official layout)")
    ap.add_argument("--model", default="DiT-XL/2")
    ap.add_argument("--image-size", type=int, default=None, help="256 or 512; default: read from the file name")
    ap.add_argument("--num-classes", type=int, default=1000)
    ap.add_argument("--config", help="DiT config as JSON (snake_case, as DiT(**config)); overrides --model/--image-size")
    ap.add_argument("--diffusers", metavar="DIR", help="write the diffusers layout into DIR instead")
    args = ap.parse_args()
    size = args.image_size
    if size is None:
        m = re.search(r"(\d+)x\1", os.path.basename(args.checkpoint))
        size = int(m.group(1)) if m else 256
    sd = load_state_dict(args.checkpoint)
    if args.config:
        cfg = json.loads(args.config)
    else:
        cfg = official_config(args.model, size, args.num_classes,
                              learn_sigma=sd["final_layer.linear.bias"].numel() == 2 * 4 * int(args.model[-1]) ** 2)
    if args.diffusers:
        os.makedirs(args.diffusers, exist_ok=True)
        save_file(official_to_diffusers(sd, cfg["depth"]),
                  os.path.join(args.diffusers, "diffusion_pytorch_model.safetensors"))
        with open(os.path.join(args.diffusers, "config.json"), "w") as f:
            json.dump(diffusers_config(cfg), f, indent=2)
        print(f"wrote {args.diffusers}/config.json and diffusion_pytorch_model.safetensors ({len(sd)} official tensors)")
        return
    if not args.output:
        raise SystemExit("output path required (or --diffusers DIR)")
    save_file(sd, args.output, metadata={"config": json.dumps(cfg), "source": os.path.basename(args.checkpoint)})
    print(f"wrote {args.output}: {len(sd)} tensors, config {json.dumps(cfg)}")


if __name__ == "__main__":
    main()
