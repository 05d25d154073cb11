#!/bin/bash
# Records the start-up of common runtimes and tools and lists every call
# that returned ENOSYS, EINVAL, ENOTTY, EPERM or EOPNOTSUPP, and detrec's
# reports (unimplemented or refused calls). Usage:
#   scripts/startup-sweep.sh [path/to/detrec]     (default .build/release/detrec)
# A Rust program is built with cargo when it is installed. Compare what it
# lists with `detrec syscalls`: every ENOSYS must be a call the table says
# why it refuses (rseq today); the rest are what the native run gets too
# (stdin is /dev/null, so terminal requests are ENOTTY).
set -u
D=$(realpath "${1:-.build/release/detrec}")
OUT=$(mktemp -d /tmp/detrec-sweep-XXXXXX)
programs=(
  "python3|/usr/bin/python3 -c print(1+1)"
  "node|/usr/bin/node -e setTimeout(()=>console.log('t'),10)"
  "java|/usr/bin/java -version"
  "perl|/usr/bin/perl -e print(1)"
  "bash|/usr/bin/bash -c /bin/ls>/dev/null"
  "gdb|/usr/bin/gdb --version"
  "git|/usr/bin/git --version"
)
if command -v cargo > /dev/null; then
  mkdir -p "$OUT/rusty/src"
  printf '[package]\nname = "rusty"\nversion = "0.1.0"\nedition = "2021"\n' > "$OUT/rusty/Cargo.toml"
  echo 'fn main() { let t = std::thread::spawn(|| 6 * 7); println!("{}", t.join().unwrap()); }' > "$OUT/rusty/src/main.rs"
  (cd "$OUT/rusty" && cargo build --release -q) && programs+=("rust|$OUT/rusty/target/release/rusty")
fi
for entry in "${programs[@]}"; do
  name=${entry%%|*}; read -r -a argv <<< "${entry#*|}"
  [ -x "${argv[0]}" ] || { echo "== $name: not installed"; continue; }
  timeout 300 "$D" record -o "$OUT/$name.trace" -- "${argv[@]}" > "$OUT/$name.out" 2> "$OUT/$name.err" < /dev/null
  echo "== $name: exit $?"
  grep -E "unimplemented|not supported|not emulated|returning" "$OUT/$name.err" | sort | uniq -c
  "$D" dump --json "$OUT/$name.trace" | python3 -c '
import collections, json, sys
failed = collections.Counter()
for line in sys.stdin:
    try: e = json.loads(line)
    except ValueError: continue
    if e.get("kind") == "syscall" and e.get("result", 0) in (-38, -22, -25, -1, -95):
        request = " " + e["args"][1] if e["name"] in ("ioctl", "fcntl", "prctl") else ""
        failed[(e["name"] + request, e["result"])] += 1
for (call, result), n in sorted(failed.items()): print("   %5d x %s -> %d" % (n, call, result))'
done
rm -rf "$OUT"
