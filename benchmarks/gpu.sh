#!/usr/bin/env bash
# One call on a GPU machine (16 cores): B/16 8x224 bf16 training clips/s with and without MBGF, evaluation
# clips/s, the loader with 16 workers on generated 340x256 videos against the training step's
# consumption, peak memory; prints ONE JSON object on stdout (progress on stderr). What is measured
# and every option: benchmarks/gpu.py.
#
#   bash benchmarks/gpu.sh                       # the defaults: about 2-3 minutes on one H100/H200-class GPU
#   bash benchmarks/gpu.sh --batch 16 --workers 8
#   bash benchmarks/gpu.sh --device cpu --model tiny --frames 4 --size 32 --batch 2 --eval-batch 2 \
#       --rounds 1 --warmup 1 --workers 1 --videos 2 --seconds 1 --loader-clips 4    # smoke run (the tests)
#
# A hard limit of 8 minutes (MBGF_BENCH_LIMIT seconds): at the limit the script prints what it has
# measured so far, marked "complete": false. PYTHON selects the interpreter (default: python).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec timeout --kill-after=20 "${MBGF_BENCH_LIMIT:-470}" "${PYTHON:-python}" "$here/gpu.py" "$@"
