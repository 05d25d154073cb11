#!/usr/bin/env python3
"""What a new process costs under `detrec record`: fork+wait,
vfork+exec+wait of a small static program and vfork+exec+wait of
/bin/true (dynamic: ld.so and libc), N times each, against an empty loop of
the same program (the baseline in the same run), for one or more detrec
binaries (e.g. before and after a change).

Per-process cost = (median wall time of the N-process run - median of the
0-process run) / N. Runs are interleaved across binaries so a noisy
neighbour hurts all alike. Each cost is also given as a ratio against the
native cost and against one bare guest exit (`detrec bench-exit`, measured
by the first binary before and after the runs). It never asserts on
timings: it is a measurement, not a test (docs/benchmarks.md). The "cpu ms"
column is the recording's CPU time per process (user + system, from wait4):
on a host whose cores other jobs share, wall time also counts the waits for
a core.

  python3 scripts/bench_processes.py --detrec .build/release/detrec \
      --detrec /tmp/baseline/.build/release/detrec --count 20 --runs 5
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

PROGRAM = r"""
/* argv[1]: fork, vfork, true (vfork+exec /bin/true), forkexec or none; argv[2]: how many. vfork execs argv[0] with "child". */
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "child") == 0) return 0;
  const char *mode = argc > 1 ? argv[1] : "none";
  int n = argc > 2 ? atoi(argv[2]) : 0;
  for (int i = 0; i < n; i++) {
    pid_t c;
    if (strcmp(mode, "fork") == 0) {
      c = fork();
      if (c == 0) _exit(0);
    } else if (strcmp(mode, "vfork") == 0) {
      c = vfork();
      if (c == 0) { execl(argv[0], argv[0], "child", (char *)0); _exit(127); }
    } else if (strcmp(mode, "true") == 0) {
      c = vfork();
      if (c == 0) { execl("/bin/true", "true", (char *)0); _exit(127); }
    } else if (strcmp(mode, "forkexec") == 0) {
      c = fork();
      if (c == 0) { execl(argv[0], argv[0], "child", (char *)0); _exit(127); }
    } else {
      break;
    }
    if (c < 0) return 2;
    int st;
    if (waitpid(c, &st, 0) != c || !WIFEXITED(st) || WEXITSTATUS(st) != 0) return 1;
  }
  return 0;
}
"""


CPU = {}


def timed(argv, trace_dir):
    """Wall seconds, or None when the program failed (a detrec without vfork).
    The run's CPU seconds (user + system, its children included) go to CPU[id(result)]."""
    start = time.perf_counter()
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=trace_dir)
    _, status, usage = os.wait4(p.pid, 0)
    elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        return None
    result = Timed(elapsed)
    result.cpu = usage.ru_utime + usage.ru_stime
    return result


class Timed(float):
    """Wall seconds, with the run's CPU seconds as `.cpu`: on a loaded host
    (other jobs on the same cores) wall time includes waiting for a core,
    CPU time does not."""
    cpu = 0.0


def bench_exit(detrec):
    p = subprocess.run([detrec, "bench-exit", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if p.returncode != 0:
        raise SystemExit("detrec bench-exit failed: " + p.stderr.decode(errors="replace"))
    return json.loads(p.stdout)["syscall"]["median_us"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--detrec", action="append", required=True, help="a detrec binary (repeat to compare)")
    ap.add_argument("--count", type=int, default=20, help="processes per run")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--modes", default="fork,vfork,true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as work:
        exe = os.path.join(work, "procs")
        src = exe + ".c"
        with open(src, "w") as f:
            f.write(PROGRAM)
        subprocess.run(["gcc", "-O1", "-static", "-o", exe, src], check=True)
        modes = args.modes.split(",")
        exit_before = bench_exit(os.path.abspath(args.detrec[0]))
        times = {(d, m): [] for d in args.detrec for m in ["none"] + modes}
        native = {m: [] for m in ["none"] + modes}
        for r in range(args.runs):
            for m in ["none"] + modes:
                n = "0" if m == "none" else str(args.count)
                t = timed([exe, m, n], work)
                if t is None:
                    raise SystemExit(f"native {m} failed")
                native[m].append(t)
                for d in args.detrec:
                    trace = os.path.join(work, f"t-{r}-{m}-{abs(hash(d))}")
                    times[(d, m)].append(timed([os.path.abspath(d), "record", "-q", "-o", trace, "--", exe, m, n], work))
        exit_us = statistics.median([exit_before, bench_exit(os.path.abspath(args.detrec[0]))])
        names = {"fork": "fork+wait", "vfork": "vfork+exec+wait (static)", "true": "vfork+exec+wait /bin/true",
                 "forkexec": "fork+exec+wait (static)"}
        print(f"{args.count} processes per run, median of {args.runs} runs; cost per process = (run - empty run) / {args.count}")
        print(f"bare guest exit (bench-exit, median before/after): {exit_us:.2f} us")
        base = statistics.median(native["none"])
        nat = {m: (statistics.median(native[m]) - base) / args.count for m in modes}
        print(f"{'':28s} {'native ms':>10s}" + "".join(f" | {'rec ms':>8s} {'/native':>8s} {'/exit':>7s} {'cpu ms':>7s}" for _ in args.detrec))
        for m in modes:
            row = f"{names.get(m, m):28s} {1000 * nat[m]:10.3f}"
            for d in args.detrec:
                empty = statistics.median(times[(d, "none")])
                ok = [t for t in times[(d, m)] if t is not None]
                if len(ok) < len(times[(d, m)]):
                    row += f" | {'fails':>8s} {'':8s} {'':7s}"
                    continue
                per = (statistics.median(ok) - empty) / args.count
                cpu = (statistics.median([t.cpu for t in ok]) - statistics.median([t.cpu for t in times[(d, "none")]])) / args.count
                row += f" | {1000 * per:8.2f} {per / nat[m] if nat[m] > 0 else float('nan'):8.0f} {per * 1e6 / exit_us:7.0f} {1000 * cpu:7.2f}"
            print(row)
        for i, d in enumerate(args.detrec):
            print(f"  column {i + 1}: {d} (empty recording {statistics.median(times[(d, 'none')]):.3f} s)")


if __name__ == "__main__":
    sys.exit(main())
