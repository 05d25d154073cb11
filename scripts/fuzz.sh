#!/bin/sh
# libFuzzer targets for untrusted input (issue 17): the trace reader and
# the ELF parser. Builds each with swiftc -sanitize=fuzzer,address and runs
# it for a bounded time; a crash leaves its input in .build/fuzz/.
#
#   scripts/fuzz.sh trace [seconds]   # default 60
#   scripts/fuzz.sh elf [seconds]
#   scripts/fuzz.sh all [seconds]     # both, each for [seconds] (CI)
#
# The corpora start from real inputs (the committed fixture trace, a
# compiled program) and grow in .build/fuzz/<target>-corpus.
set -eu
cd "$(dirname "$0")/.."
target=${1:-all}
seconds=${2:-60}
out=.build/fuzz
mkdir -p "$out"

build() {
    case $1 in
    trace)
        # SHA-256's SHA-extension blocks (the CDigest C target).
        ${CC:-gcc} -O2 -c -I Sources/CDigest/include Sources/CDigest/sha256.c -o "$out/cdigest.o"
        swiftc -sanitize=fuzzer,address -parse-as-library -O -module-name TraceFuzz \
            -I Sources/CZstd -I Sources/CDigest/include Sources/Trace/*.swift Fuzz/TraceTarget.swift \
            "$out/cdigest.o" -lzstd -o "$out/trace" ;;
    elf)
        swiftc -sanitize=fuzzer,address -parse-as-library -O -module-name ELFFuzz \
            -I Sources/CElf Sources/Kernel/Processes/ELFImage.swift Fuzz/ELFTarget.swift -lelf -o "$out/elf" ;;
    esac
}

seed() {
    corpus="$out/$1-corpus"
    mkdir -p "$corpus"
    case $1 in
    trace)
        # Mode bytes (Fuzz/TraceTarget.swift): 1 = header.json, 2 = events file, 3 = stored range, 4 = stored file.
        { printf '\001\000'; cat traces/hello-random/header.json; } > "$corpus/seed-header"
        { printf '\002\000'; cat traces/hello-random/events; } > "$corpus/seed-events"
        # 3 = a stored range: base 0, 4096 bytes, no extents (all of it a hole).
        printf '\003\000DRSR\000\000\000\000\000\000\000\000\000\020\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000' > "$corpus/seed-range"
        # 4 = a compressed stored file: the fixture's header.json, compressed (needs the zstd tool).
        if command -v zstd >/dev/null; then
            { printf '\004\000DRSF'
              python3 -c 'import os,struct,sys; sys.stdout.buffer.write(struct.pack("<Q", os.path.getsize(sys.argv[1])))' traces/hello-random/header.json
              zstd -q -1 -c --no-check traces/hello-random/header.json; } > "$corpus/seed-file"
        fi ;;
    elf)
        printf 'int main(void) { return 0; }\n' > "$out/seed.c"
        gcc -static -O1 -o "$corpus/seed-static" "$out/seed.c"
        gcc -static-pie -O1 -o "$corpus/seed-pie" "$out/seed.c"
        gcc -O1 -o "$corpus/seed-dynamic" "$out/seed.c" ;;
    esac
}

run() {
    build "$1"
    seed "$1"
    echo "fuzzing $1 for ${seconds}s"
    "$out/$1" -max_total_time="$seconds" -max_len=1048576 -rss_limit_mb=4096 \
        -artifact_prefix="$out/$1-" "$out/$1-corpus"
}

case $target in
trace|elf) run "$target" ;;
all) run trace; run elf ;;
*) echo "usage: scripts/fuzz.sh trace|elf|all [seconds]" >&2; exit 2 ;;
esac
