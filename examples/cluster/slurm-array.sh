#!/bin/bash
# dtaudit convert of one checkpoint, spread over a Slurm job array: one part per array
# task, every task on the same shared filesystem. Each task converts its own set of
# shards into a staging directory beside OUT; the task that finds every shard staged
# publishes OUT (index, config.json and copied files written from the input, shards
# linked in, atomic rename). Any order of completion, and a requeued task, give the same
# bytes as one `dtaudit convert` (see `man dtaudit`, CONVERSION, Parts, and docs/design.md).
#
#   sbatch examples/cluster/slurm-array.sh            # IN, OUT, TO below or in the env
#
# --array must run 1..N with N = NPARTS. Requeued tasks (--requeue, node failure) simply
# run their part again.
#SBATCH --job-name=dtaudit-convert
#SBATCH --array=1-8
#SBATCH --cpus-per-task=8
#SBATCH --mem=2G
#SBATCH --time=04:00:00
#SBATCH --requeue
#SBATCH --output=dtaudit-convert-%A_%a.log
set -euo pipefail
IN=${IN:-/shared/models/DeepSeek-V3}           # a model directory or an index.json
OUT=${OUT:-/shared/models/DeepSeek-V3-bf16}   # must not exist yet
TO=${TO:-bf16}
NPARTS=${NPARTS:-8}                           # = the size of --array
DTAUDIT=${DTAUDIT:-dtaudit}
exec "$DTAUDIT" convert --to "$TO" --dequantize --jobs "${SLURM_CPUS_PER_TASK:-1}" \
    --part "${SLURM_ARRAY_TASK_ID}/${NPARTS}" "$IN" -o "$OUT"
