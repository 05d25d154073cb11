#!/usr/bin/env python3
"""What a park and resume costs while recording and replaying, in bare exits.

Two threads play ping-pong over two pipes: each read finds its pipe empty,
so the thread parks (a `blocked` event) and the scheduler runs the other,
which writes and then parks in its own read. A second program makes the
same number of reads and writes without ever waiting (one thread, one pipe
it writes before reading). The difference between the two recordings (and
replays), divided by the parks the trace holds, is the cost of one park and
resume; it is printed in microseconds and in bare exits as `detrec
bench-exit` measures them in the same run.

A measurement, not a test: it asserts nothing about timings. Build detrec
with `swift build -c release` first. See docs/benchmarks.md.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PINGPONG_C = r"""
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
static int a[2], b[2]; static long n;
static void *other(void *x) { char c; for (long i = 0; i < n; i++) { read(a[0], &c, 1); write(b[1], &c, 1); } return x; }
int main(int argc, char **argv) {
  n = atol(argv[1]); pipe(a); pipe(b);
  pthread_t t; pthread_create(&t, 0, other, 0);
  char c = 'x'; for (long i = 0; i < n; i++) { write(a[1], &c, 1); read(b[0], &c, 1); }
  pthread_join(t, 0); printf("rounds %ld\n", n); return 0;
}
"""

NOWAIT_C = r"""
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
static void *idle(void *x) { return x; }
int main(int argc, char **argv) {
  long n = atol(argv[1]); int a[2]; pipe(a);
  pthread_t t; pthread_create(&t, 0, idle, 0); pthread_join(t, 0);
  char c = 'x'; for (long i = 0; i < 2 * n; i++) { write(a[1], &c, 1); read(a[0], &c, 1); }
  printf("rounds %ld\n", n); return 0;
}
"""


def run(argv):
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def timed(argv):
    start = time.perf_counter()
    p = run(argv)
    if p.returncode != 0:
        sys.exit("failed: %s: %s" % (" ".join(argv), p.stderr.decode(errors="replace")))
    return time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--detrec", default=os.path.join(REPO, ".build", "release", "detrec"))
    ap.add_argument("--rounds", type=int, default=5000, help="ping-pong rounds (default 5000)")
    ap.add_argument("--runs", type=int, default=5, help="runs of each; medians (default 5)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="detrec-bench-park-")
    try:
        exes = {}
        for name, src in [("pingpong", PINGPONG_C), ("nowait", NOWAIT_C)]:
            path = os.path.join(work, name)
            with open(path + ".c", "w") as f:
                f.write(src)
            p = run(["gcc", "-O1", "-static", "-pthread", "-o", path, path + ".c"])
            if p.returncode != 0:
                sys.exit("gcc failed: " + p.stderr.decode(errors="replace"))
            exes[name] = path
        times = {(n, m): [] for n in exes for m in ("record", "replay")}
        parks = 0
        for r in range(args.runs):
            for name, exe in exes.items():
                trace = os.path.join(work, "%s-%d" % (name, r))
                times[(name, "record")].append(timed([args.detrec, "record", "-q", "-o", trace, "--", exe, str(args.rounds)]))
                times[(name, "replay")].append(timed([args.detrec, "replay", trace]))
                if name == "pingpong" and r == 0:
                    dump = run([args.detrec, "dump", "--json", trace]).stdout.decode()
                    parks = sum(1 for line in dump.splitlines() if '"kind":"blocked"' in line)
                shutil.rmtree(trace, ignore_errors=True)
        p = run([args.detrec, "bench-exit", "--json"])
        exit_us = json.loads(p.stdout)["syscall"]["median_us"] if p.returncode == 0 else float("nan")
        out = {"rounds": args.rounds, "parks": parks, "bare_exit_us": exit_us}
        for mode in ("record", "replay"):
            extra = statistics.median(times[("pingpong", mode)]) - statistics.median(times[("nowait", mode)])
            per = extra / parks * 1e6 if parks else float("nan")
            out[mode] = {"pingpong_s": statistics.median(times[("pingpong", mode)]),
                         "nowait_s": statistics.median(times[("nowait", mode)]),
                         "park_resume_us": per, "park_resume_exits": per / exit_us if exit_us else float("nan")}
        if args.json:
            print(json.dumps(out))
            return
        print("%d rounds, %d parks; bare exit %.2f us" % (args.rounds, parks, exit_us))
        for mode in ("record", "replay"):
            o = out[mode]
            print("%s: ping-pong %.3f s, no waits %.3f s: one park+resume %.1f us = %.0f bare exits"
                  % (mode, o["pingpong_s"], o["nowait_s"], o["park_resume_us"], o["park_resume_exits"]))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
