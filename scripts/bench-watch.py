#!/usr/bin/env python3
"""A watchpoint set at the program's start, against a plain replay.

Records a program that makes EVENTS syscalls (getppid), then runs a loop
of LOOP iterations of plain computation in one slice (no syscall, its
stores on the stack), and only then writes the global `target` (alone on
its page). Against `detrec replay
--gdb-listen` it sets `Z2` on `target` before the first instruction and
times the `c` that ends at the first hit (over the raw gdb remote
protocol), against the baseline measured in the same run: `detrec replay`
of the whole trace (no gdb). With `--before PATH` the same is measured
for a second detrec (main's build, say). Not a test: numbers depend on
the host.

Usage: scripts/bench-watch.py [--detrec PATH] [--before PATH] [--events N] [--loop N] [--repeat R] [--shared-page]
"""
import argparse
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

SOURCE = r"""
#include <unistd.h>
#include <sys/syscall.h>
/* Alone on its page: the loop's own stores go to the stack (or, with
   --shared-page, to target.sink: every one of them faults). */
struct { long value; volatile long sink; char rest[4096 - 2 * sizeof(long)]; } target __attribute__((aligned(4096)));
int main(void) {
  for (long i = 0; i < EVENTS; i++) syscall(SYS_getppid);
  SINK
  long acc = 0;
  for (long i = 0; i < LOOP; i++) { acc += i * 3; sink = acc; }
  target.value = acc;
  write(1, "done\n", 5);
  return 0;
}
"""


def load_remote():
    here = os.path.dirname(os.path.abspath(__file__))
    spec = importlib.util.spec_from_file_location("bench_reverse", os.path.join(here, "bench-reverse.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.Remote


def time_watch(detrec, trace, address, Remote):
    server = subprocess.Popen([detrec, "replay", "--gdb-listen", "127.0.0.1:0", trace],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    line = server.stderr.readline()
    port = int(re.search(r"127\.0\.0\.1:(\d+)", line).group(1))
    r = Remote(port)
    r.ask("qSupported:swbreak+")
    assert r.ask(f"Z2,{address:x},8") == "OK"
    t = time.monotonic()
    stop = r.ask("c")
    elapsed = time.monotonic() - t
    assert f"watch:{address:x}" in stop, stop
    r.s.sendall(b"$k#6b")
    server.wait(timeout=60)
    return elapsed


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--detrec", default=".build/release/detrec")
    ap.add_argument("--before", help="another detrec to measure the same way (main's)")
    ap.add_argument("--events", type=int, default=10000)
    ap.add_argument("--loop", type=int, default=100000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--shared-page", action="store_true", help="the loop stores to the watched page too")
    opts = ap.parse_args()
    Remote = load_remote()
    detrec = os.path.abspath(opts.detrec)
    work = tempfile.mkdtemp(prefix="detrec-bench-watch-")
    try:
        c = os.path.join(work, "p.c")
        with open(c, "w") as f:
            sink = "#define sink target.sink" if opts.shared_page else "volatile long sink;"
            f.write(SOURCE.replace("EVENTS", str(opts.events)).replace("LOOP", str(opts.loop)).replace("SINK", sink))
        exe = os.path.join(work, "p")
        subprocess.run(["gcc", "-static", "-O1", "-o", exe, c], check=True)
        trace = os.path.join(work, "trace")
        subprocess.run([detrec, "record", "-q", "-o", trace, "--", exe], check=True, stdout=subprocess.DEVNULL)
        address = None
        for line in subprocess.run(["nm", exe], capture_output=True, text=True).stdout.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[2] == "target":
                address = int(parts[0], 16)
        full = []
        for _ in range(opts.repeat):
            t = time.monotonic()
            subprocess.run([detrec, "replay", trace], check=True, stdout=subprocess.DEVNULL)
            full.append(time.monotonic() - t)
        base = min(full)
        where = "on the watched page" if opts.shared_page else "on the stack"
        print(f"recording: {opts.events} getppid calls, then {opts.loop} loop iterations in one slice (stores {where}), then the write")
        print(f"replay from the start (no gdb), the baseline: {base:.3f} s")
        runs = [("this detrec", detrec)] + ([("before", os.path.abspath(opts.before))] if opts.before else [])
        for name, d in runs:
            xs = [time_watch(d, trace, address, Remote) for _ in range(opts.repeat)]
            print(f"watch from the start to the first hit, {name}: {min(xs):.3f} s ({min(xs) / base:.2f} x the baseline)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
