#!/usr/bin/env bash
# The GPU check of issue 33, one script, under 10 minutes on one CUDA GPU:
#   bench/gpu_check.sh [--dry-run] [--epochs 5] [--out /tmp/hsi_gpu_check]
# Runs, from the repository root:
#   1. the seed recipe (HybridSN, 8-bit Indian Pines, 25x25 windows, batch 32) for --epochs epochs
#      with trainer=gpu in fp32, in bf16-mixed and with trainer.precision=auto (which it chose);
#   2. trainer=ddp on one device (the distributed code path, bf16 where auto picks it);
#   3. the dense whole-scene map of Indian Pines from the fp32 run's checkpoint, in fp32 and in
#      bf16 (python -m hsi.predict), and how many labels the two maps share;
# then writes one markdown table, <out>/gpu_check.md, and prints it.
# --dry-run: the same steps on the CPU (trainer=cpu, DDP over gloo) with a small synthetic scene
# and one epoch, to check the script where there is no GPU (tests/test_gpu_check.py runs it).
# Data: ../shared/data beside the repository, or HSI_SHARED_DATA=<folder holding indian_pines/
# and indian_pines_8bit/>. PYTHON=<interpreter> (default: python).
set -euo pipefail

cd "$(dirname "$0")/.."
DRY=0
EPOCHS=5
OUT=/tmp/hsi_gpu_check
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --epochs) EPOCHS="$2"; shift ;;
    --out) OUT="$2"; shift ;;
    *) echo "unknown option $1 (use --dry-run, --epochs N, --out DIR)" >&2; exit 2 ;;
  esac
  shift
done
PY=${PYTHON:-python}
DATA=${HSI_SHARED_DATA:-../shared/data}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if [ "$DRY" = 1 ]; then
  EPOCHS=1
  SCENE=(data=synthetic data.height=24 data.width=24 data.bands=30 data.classes=4 data.patch_size=9
         data.pca.components=15 seed=345 data.split.test_ratio=0.9 data.split.val_ratio=0.0
         data.batch_size=32 callbacks.model_checkpoint.monitor=null)
  GPU=(trainer=cpu)
  DDP=(trainer=ddp_cpu trainer.devices=1)
  DEVICE=cpu
else
  for f in indian_pines_8bit/IP_200_M.mat indian_pines/Indian_pines_gt.mat; do
    [ -f "$DATA/$f" ] || { echo "$DATA/$f is missing: set HSI_SHARED_DATA=<folder holding it>" >&2; exit 1; }
  done
  SCENE=(experiment=seed_recipe data=custom "data.cube_path=$DATA/indian_pines_8bit/IP_200_M.mat"
         "data.gt_path=$DATA/indian_pines/Indian_pines_gt.mat")
  GPU=(trainer=gpu)
  DDP=(trainer=ddp trainer.devices=1)
  DEVICE=cuda
fi
COMMON=("${SCENE[@]}" "trainer.max_epochs=$EPOCHS" logger=none callbacks.progress_bar.refresh_rate=0)

"$PY" - "$OUT/device.json" <<'EOF'
import json, sys, torch
from hsi.run.precision import auto_precision
from hsi.utils.hardware import cpu_computes_bf16, cuda_capability
cuda = torch.cuda.is_available()
info = {"torch": torch.__version__, "cuda": cuda,
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "capability": list(cuda_capability() or []), "cpu_bf16": cpu_computes_bf16(),
        "auto_gpu": auto_precision("cuda") if cuda else None, "auto_cpu": auto_precision("cpu")}
json.dump(info, open(sys.argv[1], "w"))
print(info)
EOF

run() {  # name, then hsi.train overrides; seconds and exit status go to <out>/<name>.status
  local name=$1; shift
  local start=$SECONDS status=0
  "$PY" -m hsi.train "${COMMON[@]}" "$@" "hydra.run.dir=$OUT/$name" > "$OUT/$name.log" 2>&1 || status=$?
  echo "{\"status\": $status, \"wall_seconds\": $((SECONDS - start))}" > "$OUT/$name.status"
  echo "$name: exit $status, $((SECONDS - start)) s (log: $OUT/$name.log)"
}
predict() {  # name, checkpoint, precision
  local name=$1 ckpt=$2 precision=$3 start=$SECONDS status=0
  "$PY" -m hsi.predict "ckpt_path=$ckpt" "precision=$precision" "device=$DEVICE" progress=false \
    "hydra.run.dir=$OUT/$name" > "$OUT/$name.log" 2>&1 || status=$?
  echo "{\"status\": $status, \"wall_seconds\": $((SECONDS - start))}" > "$OUT/$name.status"
  echo "$name: exit $status, $((SECONDS - start)) s (log: $OUT/$name.log)"
}

run train_fp32 "${GPU[@]}" trainer.precision=32-true
run train_bf16 "${GPU[@]}" trainer.precision=bf16-mixed
run train_auto "${GPU[@]}" trainer.precision=auto
run ddp_auto "${DDP[@]}" trainer.precision=auto
CKPT="$OUT/train_fp32/checkpoints/last.ckpt"
predict map_fp32 "$CKPT" 32-true
predict map_bf16 "$CKPT" bf16-mixed

"$PY" - "$OUT" <<'EOF'
import json, sys
from pathlib import Path
import numpy as np
out = Path(sys.argv[1])
device = json.loads((out / "device.json").read_text())
def read(name, file):
    path = out / name / file
    return json.loads(path.read_text()) if path.is_file() else {}
lines = [f"Device: {device['device']} (capability {device['capability'] or '-'}), torch {device['torch']}; "
         f"auto picks {device['auto_gpu'] or device['auto_cpu']} here.", "",
         "| step | precision (asked -> used) | exit | wall s | train s | s / epoch | test OA | map s | map OA |",
         "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
for name in ("train_fp32", "train_bf16", "train_auto", "ddp_auto", "map_fp32", "map_bf16"):
    status = json.loads((out / f"{name}.status").read_text())
    m = read(name, "metrics.json") if not name.startswith("map") else read(name, "prediction.json")
    epochs = m.get("epochs") or 0
    asked = m.get("precision_asked", m.get("precision", "-"))
    used = m.get("precision", "-")
    cell = lambda v, f="{:.4f}": "-" if v is None else f.format(v)
    lines.append(f"| {name} | {asked} -> {used} | {status['status']} | {status['wall_seconds']} | "
                 f"{cell(m.get('train_seconds'), '{:.1f}')} | "
                 f"{cell(m['train_seconds'] / epochs if epochs and m.get('train_seconds') else None, '{:.2f}')} | "
                 f"{cell(m.get('oa') if not name.startswith('map') else None)} | "
                 f"{cell(m.get('map_seconds', m.get('seconds')), '{:.2f}')} | "
                 f"{cell(m.get('map_oa_labelled', m.get('oa') if name.startswith('map') else None))} |")
maps = [out / n / "prediction.npy" for n in ("map_fp32", "map_bf16")]
if all(p.is_file() for p in maps):
    a, b = (np.load(p) for p in maps)
    lines += ["", f"Dense map, same fp32 weights: bf16 labels equal the fp32 labels on "
              f"{100 * float((a == b).mean()):.3f}% of {a.size} pixels."]
table = "\n".join(lines) + "\n"
(out / "gpu_check.md").write_text(table)
print(table)
failed = [n for n in ("train_fp32", "train_bf16", "train_auto", "ddp_auto", "map_fp32", "map_bf16")
          if json.loads((out / f"{n}.status").read_text())["status"] != 0]
sys.exit(1 if failed else 0)
EOF
