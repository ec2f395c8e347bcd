#!/usr/bin/env bash
# An interleaved A/B of two tidelog binaries on the same disk: three rounds,
# each running both (`tidelog bench --rounds 1 ARGS...`), the order
# alternating, JSON and text per run in OUT. scripts/ab_table.py OUT prints
# the medians side by side.
#
#   scripts/ab.sh OLD_BIN NEW_BIN OUT --mode durable,written --tasks 1,64 --duration 1.5
set -u
old=$1 new=$2 out=$3
shift 3
mkdir -p "$out"
for round in 1 2 3; do
    if [ $((round % 2)) = 1 ]; then order="old new"; else order="new old"; fi
    for which in $order; do
        bin=$old
        [ "$which" = new ] && bin=$new
        "$bin" bench --rounds 1 --json "$out/$which-$round.json" "$@" >"$out/$which-$round.txt" 2>&1
    done
done
