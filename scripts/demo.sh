#!/usr/bin/env bash
# Installs what is needed, builds detrec, records the bundled example and
# replays it twice: the replays print exactly what the recording printed,
# random numbers and timestamps included.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
swift build -c release
detrec=.build/release/detrec
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
gcc -static -O1 -o "$work/example" examples/example.c
$detrec doctor
echo "== record"
$detrec record -o "$work/trace" -- "$work/example" hello world
echo "== replay"
$detrec replay "$work/trace"
echo "== replay again, after deleting the program"
rm "$work/example"
$detrec replay "$work/trace"
echo "== the trace"
$detrec dump "$work/trace" | head -n 20
