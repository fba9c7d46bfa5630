#!/usr/bin/env bash
# One-shot GPU recipe: digit classifier (~1 min) then the MNIST DiT (--minutes, default 7), bf16, cuda.
# Run from the repo root:   bash tools/train/run_gpu.sh
# Needs: python3 with torch, numpy, safetensors (pillow/matplotlib optional); tools/train/data/mnist.npz
# (gitignored: produce it with tools/train/export_mnist.py and carry it to the GPU machine). No network, no node.
# Env: OUT (destination; default tools/train/runs/gpu), DIT_MINUTES (7), CLF_MINUTES (3), SEED (0), DEVICE (cuda),
#      EXTRA_CLF_ARGS, EXTRA_DIT_ARGS.
# When OUT is set (device machine: at most 8 files of <=16 MiB come back) the run happens in a scratch dir and
# $OUT receives: mnist-dit.safetensors (or, if > 15 MiB, mnist-dit.safetensors.part-aa/-ab...; reassemble with
# cat mnist-dit.safetensors.part-* > mnist-dit.safetensors),
# mnist-classifier.safetensors, samples.png, loss.png, summary.json, extras.tar.gz (loss.csv, configs, logs).
# (the body is one function so that editing this file while it runs cannot derail it)
main() {
set -uo pipefail
cd "$(dirname "$0")/../.."
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
DIT_MINUTES=${DIT_MINUTES:-7}
CLF_MINUTES=${CLF_MINUTES:-3}
SEED=${SEED:-0}
DEVICE=${DEVICE:-cuda}
if [ -n "${OUT:-}" ]; then RUN=$(mktemp -d /tmp/ditcache-train.XXXX); DEST=$OUT; else RUN=tools/train/runs/gpu; DEST=; fi
mkdir -p "$RUN"
DATA=tools/train/data/mnist.npz
[ -f "$DATA" ] || { echo "missing $DATA (run tools/train/export_mnist.py here and carry tools/train/data)"; exit 2; }
$PY -c "import torch,numpy,safetensors;print('torch',torch.__version__,'cuda',torch.cuda.is_available(),torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader 2>/dev/null || true

T0=$(date +%s)
$PY tools/train/train_classifier.py --device "$DEVICE" --minutes "$CLF_MINUTES" --seed "$SEED" --out "$RUN" ${EXTRA_CLF_ARGS:-} 2>&1 | tee "$RUN/classifier.log"
CLF_RC=${PIPESTATUS[0]}
T1=$(date +%s)
$PY tools/train/train_dit.py --device "$DEVICE" --bf16 --minutes "$DIT_MINUTES" --seed "$SEED" --out "$RUN" \
  --classifier "$RUN/mnist-classifier.safetensors" ${EXTRA_DIT_ARGS:-} 2>&1 | tee "$RUN/dit.log"
DIT_RC=${PIPESTATUS[0]}
T2=$(date +%s)

$PY - "$RUN" "$CLF_RC" "$DIT_RC" "$((T1-T0))" "$((T2-T1))" <<'PYEOF'
import hashlib, json, os, sys
run, clf_rc, dit_rc, clf_s, dit_s = sys.argv[1:6]
def rd(p):
    try: return json.load(open(os.path.join(run, p)))
    except Exception: return None
w = os.path.join(run, "mnist-dit.safetensors")
s = {"classifier_rc": int(clf_rc), "dit_rc": int(dit_rc), "classifier_wall_s": int(clf_s), "dit_wall_s": int(dit_s),
     "classifier": rd("classifier-summary.json"), "dit": rd("dit-summary.json"),
     "mnist_dit_sha256": hashlib.sha256(open(w, "rb").read()).hexdigest() if os.path.exists(w) else None,
     "mnist_dit_bytes": os.path.getsize(w) if os.path.exists(w) else None}
json.dump(s, open(os.path.join(run, "summary.json"), "w"), indent=2)
print("==== SUMMARY ====")
print(json.dumps(s, indent=2))
PYEOF

if [ -n "$DEST" ]; then
  mkdir -p "$DEST"
  W="$RUN/mnist-dit.safetensors"
  if [ -f "$W" ] && [ "$(stat -c %s "$W")" -le $((15*1024*1024)) ]; then cp "$W" "$DEST/"
  elif [ -f "$W" ]; then split -b 15M -a 2 "$W" "$DEST/mnist-dit.safetensors.part-"; fi
  for f in mnist-classifier.safetensors samples.png loss.png summary.json; do [ -f "$RUN/$f" ] && cp "$RUN/$f" "$DEST/"; done
  (cd "$RUN" && tar czf "$DEST/extras.tar.gz" --ignore-failed-read loss.csv mnist-dit.json dit-summary.json \
     classifier-summary.json classifier.log dit.log samples.pt 2>/dev/null)
  echo "files in $DEST:"; ls -la "$DEST"
  if ls "$DEST"/mnist-dit.safetensors.part-* >/dev/null 2>&1; then
    echo "reassemble: cat mnist-dit.safetensors.part-* > mnist-dit.safetensors  (sha256 in summary.json)"; fi
fi
[ "$CLF_RC" = 0 ] && [ "$DIT_RC" = 0 ]
}
main "$@"
