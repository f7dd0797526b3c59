#!/usr/bin/env bash
# The 7B-shape benchmark of the README: makes the files with `qwasm synth` (once; they are kept),
# runs `qwasm bench` on each at 1 and 2 threads (128-token prompt, 32 generated, best of --repeat),
# and prints decode tokens/s with the GB/s of weights each decode step streams, beside the 0.5B of
# the same type (the ratio must be >= 0.95). Then what sharding itself costs: the 0.5B at 1 memory
# vs 3 (--max-shard-mb 160; its LM head with the tied embedding and the 128-row logits take about
# 150 MB, so 3 is the most a uniform limit makes), interleaved A/B runs, best of each.
#
#   scripts/bench-7b.sh [TYPE...]           default: Q4_0 Q8_0
#   QWASM_BIG_DIR=/work/models-big          where the files go (7B Q4_0 4.3 GB, Q8_0 8.1 GB)
#   QWASM_BENCH_REPEAT=3                    runs per figure (best of)
#   QWASM_BENCH_SHARDS=0                    skip the sharding A/B
#   QWASM_BENCH_WEIGHTS=zeros               make the files with scripts/zero-model.mjs (the synth header,
#                                           zero weights, a sparse file: seconds instead of the tens of
#                                           minutes synth's random weights take; the same speed)
#
# Needs `node scripts/build.mjs` first, and free RAM for the biggest file (the preflight refuses
# otherwise, with the numbers). Run it on a quiet machine: numbers swing 10-40% on shared cores.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${QWASM_BIG_DIR:-/work/models-big}
REPEAT=${QWASM_BENCH_REPEAT:-3}
TYPES=("$@")
[ ${#TYPES[@]} -eq 0 ] && TYPES=(Q4_0 Q8_0)
mkdir -p "$DIR"
QWASM="node dist/cli.js"

make_model() { # shape type -> path
  local path
  if [ "${QWASM_BENCH_WEIGHTS:-}" = zeros ]; then
    path="$DIR/$1-$2-zeros.gguf"
    [ -s "$path" ] || node scripts/zero-model.mjs "$path" --shape "$1" --type "$2" >&2
  else
    path="$DIR/$1-$2.gguf"
    if [ ! -s "$path" ]; then
      echo "synth $1 $2 -> $path" >&2
      $QWASM synth "$path" --shape "$1" --type "$2" --seed 1 >&2
    fi
  fi
  echo "$path"
}

bench() { # path threads [extra...] -> one JSON line
  local path=$1 threads=$2; shift 2
  $QWASM bench "$path" --threads "$threads" --prompt-tokens 128 --gen-tokens 32 --repeat "$REPEAT" --json "$@"
}

summary() { # label json
  node -e '
    const r = JSON.parse(process.argv[2]);
    const line = [process.argv[1].padEnd(26), `${r.threads} thr`, `decode ${r.decodeTokensPerSecond.toFixed(2)} tok/s`,
      `forward ${r.forwardDecodeTokensPerSecond.toFixed(2)} tok/s = ${r.forwardDecodeWeightGBps.toFixed(2)} GB/s`,
      `prefill ${r.prefillTokensPerSecond.toFixed(1)} tok/s`, `${(r.wasmMemoryBytes / 2 ** 30).toFixed(2)} GiB in ${r.wasmMemories} memories`];
    console.log(line.join("  "));' "$1" "$2"
}

gbps() { node -e 'console.log(JSON.parse(process.argv[1]).forwardDecodeWeightGBps)' "$1"; }

for type in "${TYPES[@]}"; do
  big=$(make_model 7b "$type")
  small=$(make_model 0.5b "$type")
  for threads in 1 2; do
    b=$(bench "$big" "$threads" | tail -1)
    s=$(bench "$small" "$threads" | tail -1)
    summary "7B $type" "$b"
    summary "0.5B $type" "$s"
    node -e 'const [b, s] = process.argv.slice(1).map(Number); console.log(`  7B / 0.5B decode GB/s: ${(b / s).toFixed(3)} (>= 0.95 wanted)`)' "$(gbps "$b")" "$(gbps "$s")"
  done
done

if [ "${QWASM_BENCH_SHARDS:-1}" != 0 ]; then
  small=$(make_model 0.5b Q4_0)
  # 0.5B Q4_0 is about 0.35 GB with its KV cache: 160 MiB shards make 3 memories.
  one=0; four=0
  for round in 1 2 3; do
    a=$(bench "$small" 2 --repeat 1 | tail -1)
    b=$(bench "$small" 2 --repeat 1 --max-shard-mb 160 | tail -1)
    one=$(node -e 'console.log(Math.max(+process.argv[1], JSON.parse(process.argv[2]).forwardDecodeTokensPerSecond))' "$one" "$a")
    four=$(node -e 'const r = JSON.parse(process.argv[2]); if (r.wasmMemories !== 3) console.error(`expected 3 memories, got ${r.wasmMemories}`); console.log(Math.max(+process.argv[1], r.forwardDecodeTokensPerSecond))' "$four" "$b")
  done
  node -e 'const [a, b] = process.argv.slice(1).map(Number); console.log(`0.5B Q4_0 forward decode, best of 3 interleaved: 1 memory ${a.toFixed(2)} tok/s, 3 memories ${b.toFixed(2)} tok/s: 3/1 = ${(b / a).toFixed(3)}`)' "$one" "$four"
fi
