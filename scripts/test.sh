#!/usr/bin/env bash
# The whole test suite: unit tests, trace format tests and end-to-end
# record/replay tests (which compile small C programs with gcc and need /dev/kvm).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
if [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then
  echo "test.sh: /dev/kvm is missing or not read/writable by $(id -un): detrec needs KVM" >&2
  exit 1
fi
swift build --build-tests
swift test --skip-build
# The libFuzzer targets (trace reader, ELF parser), each for a bounded time;
# DETREC_FUZZ_SECONDS=0 skips them.
fuzz_seconds=${DETREC_FUZZ_SECONDS:-15}
if [ "$fuzz_seconds" -gt 0 ]; then
  scripts/fuzz.sh all "$fuzz_seconds"
fi
