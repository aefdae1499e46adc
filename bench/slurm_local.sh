#!/usr/bin/env bash
# A single-node Slurm on this machine, from the distribution's packages, and the project's sweeps
# through it, compared with the same sweeps run locally:
#   1. apt-get install slurm-wlm munge; a munge key; slurmctld + slurmd on localhost (no systemd,
#      no cgroups: proctrack/linuxproc, task/none), one partition `local` with this machine's CPUs;
#   2. a 4-job multirun (seed 0,1 x data.patch_size 9,11 on the synthetic scene, 8 epochs) through
#      hydra/launcher=slurm (submitit), and the same multirun with the local launcher;
#   3. a 4-trial search whose two workers are Slurm jobs (sbatch, one journal storage), and the
#      same search with one local worker;
#   4. the comparison: same folders, same metrics per job / per trial number (fixed seeds,
#      deterministic CPU), hsi.summarize's results.csv identical but for the timing column.
# Needs root (apt, daemons); the daemons it starts are stopped at its end (KEEP_SLURM=1 keeps them).
# Usage: bash bench/slurm_local.sh [output folder]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="${1:-/tmp/hsi_slurm}"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
HOST="$(hostname -s)"
CPUS="$(nproc --all)"
MEM_MB="$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))"
export PYTHONPATH="$ROOT" OMP_NUM_THREADS=1 HSI_CACHE_DIR="$OUT/cache"

echo "== 1. Slurm on $HOST ($CPUS CPUs, ${MEM_MB} MB)"
if ! command -v slurmctld >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
fi
slurmctld -V
if [ ! -s /etc/munge/munge.key ]; then
  mkdir -p /etc/munge
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
fi
chown -R munge:munge /etc/munge /var/lib/munge /var/log/munge 2>/dev/null || true
mkdir -p /run/munge && chown munge:munge /run/munge
chmod 0400 /etc/munge/munge.key
STARTED=()
# the daemons this script starts are stopped when it ends (KEEP_SLURM=1 leaves them running)
stop_started() {
  [ "${KEEP_SLURM:-0}" = 1 ] && return
  for pid in "${STARTED[@]}"; do kill "$pid" 2>/dev/null || true; done
}
trap stop_started EXIT
if ! pgrep -x munged >/dev/null; then runuser -u munge -- munged; STARTED+=("$(pgrep -n -x munged)"); fi
munge -n | unmunge | grep -q "STATUS:.*Success"

mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
cat > /etc/slurm/slurm.conf <<EOF
ClusterName=hsi
SlurmctldHost=$HOST
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
NodeName=$HOST CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=local Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
if ! pgrep -x slurmctld >/dev/null; then slurmctld; sleep 1; STARTED+=("$(cat /run/slurmctld.pid)"); fi
if ! pgrep -x slurmd >/dev/null; then slurmd; sleep 1; STARTED+=("$(cat /run/slurmd.pid)"); fi
for _ in $(seq 30); do sinfo -h -o %T 2>/dev/null | grep -qE "idle|mixed" && break; sleep 1; done
scontrol update nodename="$HOST" state=resume 2>/dev/null || true
sinfo

rm -rf "$OUT/multirun_local" "$OUT/multirun_slurm" "$OUT/search_local" "$OUT/search_slurm"
FAST=(data=synthetic data.height=24 data.width=24 data.bands=30 data.classes=4 data.pca.components=15
      data.eval_batch_size=512 trainer=cpu trainer.deterministic=true callbacks.progress_bar.refresh_rate=0
      logger=none map=false data.split.val_ratio=0.1 trainer.max_epochs=8)
SLURM=(hydra/launcher=slurm hydra.launcher.partition=local hydra.launcher.gpus_per_node=0
       hydra.launcher.cpus_per_task=1 hydra.launcher.mem_gb=2 hydra.launcher.timeout_min=30
       "hydra.launcher.setup=['export OMP_NUM_THREADS=1','export PYTHONPATH=$ROOT']")

echo "== 2. a 4-job multirun: local launcher, then Slurm"
"$PY" -m hsi.train -m "${FAST[@]}" seed=0,1 data.patch_size=9,11 hydra.sweep.dir="$OUT/multirun_local" >/dev/null 2>&1
"$PY" -m hsi.train -m "${FAST[@]}" seed=0,1 data.patch_size=9,11 hydra.sweep.dir="$OUT/multirun_slurm" "${SLURM[@]}" \
  >"$OUT/multirun_slurm.log" 2>&1
sacct >/dev/null 2>&1 || true

echo "== 3. a 4-trial search: one local worker, then two workers as Slurm jobs"
SEARCH=(hparams_search=synthetic_optuna "${FAST[@]}" search.n_trials=4 search.sampler.n_startup_trials=4
        search/pruner=none)
"$PY" -m hsi.search "${SEARCH[@]}" search.dir="$OUT/search_local" >/dev/null 2>&1
mkdir -p "$OUT/search_slurm"
JOBS=()
for worker in 1 2; do
  JOBS+=("$(sbatch --parsable --partition=local --cpus-per-task=1 --mem=2G --chdir="$ROOT" \
      --output="$OUT/search_slurm_worker$worker.out" \
      --export=ALL,OMP_NUM_THREADS=1,PYTHONPATH="$ROOT" \
      --wrap="$PY -m hsi.search ${SEARCH[*]} search.dir=$OUT/search_slurm")")
done
echo "search workers: Slurm jobs ${JOBS[*]}"
while squeue -h -j "$(IFS=,; echo "${JOBS[*]}")" 2>/dev/null | grep -q .; do sleep 2; done

echo "== 4. comparison"
"$PY" - "$OUT" <<'PYEOF'
import csv, json, sys
from pathlib import Path

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

out = Path(sys.argv[1])
KEYS = ("oa", "aa", "kappa", "val_oa", "epochs")


def jobs(folder):
    return {p.name: p for p in folder.iterdir() if p.is_dir() and (p / ".hydra").is_dir()}


def files(job):
    return sorted(str(p.relative_to(job)) for p in job.rglob("*") if p.is_file() and p.suffix != ".log")


def rows(folder):
    import subprocess
    subprocess.run([sys.executable, "-m", "hsi.summarize", str(folder)], capture_output=True)
    with open(folder / "results.csv", newline="") as f:
        return [{k: v for k, v in row.items() if k != "train_seconds"} for row in csv.DictReader(f)]


ok = True
local, slurm = jobs(out / "multirun_local"), jobs(out / "multirun_slurm")
print(f"multirun: {len(local)} local jobs, {len(slurm)} Slurm jobs")
print("| job | overrides | local OA | Slurm OA | local val OA | Slurm val OA | same files |")
print("|---|---|---|---|---|---|---|")
for name in sorted(set(local) | set(slurm)):
    a = json.loads((local[name] / "metrics.json").read_text()) if name in local else {}
    b = json.loads((slurm[name] / "metrics.json").read_text()) if name in slurm else {}
    same = name in local and name in slurm and files(local[name]) == files(slurm[name])
    lines = (local.get(name) or slurm[name]).joinpath(".hydra/overrides.yaml").read_text().split("\n- ")
    overrides = " ".join(l.strip() for l in lines if l.startswith(("seed", "data.patch_size")))
    print(f"| {name} | {overrides} | {a.get('oa')} | {b.get('oa')} | {a.get('val_oa')} | {b.get('val_oa')} | {same} |")
    ok &= same and all(a.get(k) == b.get(k) for k in KEYS)
ok &= rows(out / "multirun_local") == rows(out / "multirun_slurm")
print("summaries (results.csv less train_seconds) identical:",
      rows(out / "multirun_local") == rows(out / "multirun_slurm"))


def trials(folder):
    storage = JournalStorage(JournalFileBackend(str(folder / "optuna.journal")))
    return {t.number: t for t in optuna.load_study(study_name="synthetic_optuna", storage=storage).trials}


a, b = trials(out / "search_local"), trials(out / "search_slurm")
print(f"\nsearch: {len(a)} local trials, {len(b)} trials by 2 Slurm workers "
      f"({len({t.user_attrs.get('worker') for t in b.values()})} distinct workers)")
print("| trial | params | local val OA | Slurm val OA |")
print("|---|---|---|---|")
for n in sorted(set(a) | set(b)):
    print(f"| {n} | {a[n].params if n in a else b[n].params} | {a[n].value if n in a else None} | "
          f"{b[n].value if n in b else None} |")
    ok &= n in a and n in b and a[n].params == b[n].params and a[n].value == b[n].value
print("\nSlurm equals local:", ok)
sys.exit(0 if ok else 1)
PYEOF
