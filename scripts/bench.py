#!/usr/bin/env python3
"""Record/replay overhead of detrec against native runs, as ratios.

Compiles a few static test programs, runs each natively, under
`detrec record` and under `detrec replay` R times (interleaved, so that a
noisy neighbour hurts all three alike), and prints medians and ratios. For a
loop of 100000 getppid() syscalls it also derives the cost of one recorded and
one replayed syscall and compares it with the bare exit cost that
`detrec bench-exit` measures in the same run.

It builds nothing of detrec itself (build with `swift build -c release`
first) and never asserts on timings: it is a measurement, not a test. It
exits non-zero only when a program cannot be built or does not run
correctly. See docs/benchmarks.md.
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SYSCALLS = 100000

SYSCALL_LOOP_C = r"""
/* N raw getppid() syscalls (argv[1], default 100000): no libc caching. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>
int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 100000;
  long sum = 0;
  for (long i = 0; i < n; i++) sum += syscall(SYS_getppid);
  printf("calls %ld nonzero %d\n", n, sum != 0 || n == 0);
  return 0;
}
"""

# --preemption: threads and timers with a real heap (docs/preemption.md).
HEAP_THREADS_C = r"""
/* 2 threads x N trivial syscalls after touching M MiB of heap (argv[1] = M, argv[2] = N). */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
static long calls;
static void *worker(void *arg) {
  long s = 0;
  for (long i = 0; i < calls; i++) s += syscall(SYS_getppid);
  return (void *)(long)(s != 0);
}
int main(int argc, char **argv) {
  size_t mib = argc > 1 ? (size_t)atol(argv[1]) : 1;
  calls = argc > 2 ? atol(argv[2]) : 2000;
  char *heap = malloc(mib << 20);
  if (!heap) return 1;
  memset(heap, 1, mib << 20);
  pthread_t t[2];
  for (int i = 0; i < 2; i++) pthread_create(&t[i], 0, worker, 0);
  long ok = 0;
  for (int i = 0; i < 2; i++) { void *r; pthread_join(t[i], &r); ok += (long)r; }
  printf("heap %zu MiB, 2 x %ld calls, ok %ld, byte %d\n", mib, calls, ok, heap[mib << 19]);
  return 0;
}
"""

HEAP_TIMER_C = r"""
/* N trivial syscalls with a timer armed (1000 s away) after touching M MiB of heap. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>
int main(int argc, char **argv) {
  size_t mib = argc > 1 ? (size_t)atol(argv[1]) : 64;
  long calls = argc > 2 ? atol(argv[2]) : 4000;
  int armed = argc > 3 ? atoi(argv[3]) : 1;
  char *heap = malloc(mib << 20);
  if (!heap) return 1;
  memset(heap, 1, mib << 20);
  if (armed) { struct itimerval it = {{0, 0}, {1000, 0}}; setitimer(ITIMER_REAL, &it, 0); }
  long s = 0;
  for (long i = 0; i < calls; i++) s += syscall(SYS_getppid);
  printf("heap %zu MiB, %ld calls, timer %d, ok %d, byte %d\n", mib, calls, armed, s != 0, heap[mib << 19]);
  return 0;
}
"""


class BenchError(Exception):
    pass


def run(argv, **kw):
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def timed(argv):
    """Wall-clock seconds of one run, and the completed process."""
    start = time.perf_counter()
    p = run(argv)
    return time.perf_counter() - start, p


def compile_programs(progs, work):
    gcc = shutil.which("gcc")
    if not gcc:
        raise BenchError("gcc not found on PATH")
    binaries = {}
    sources = {
        "compute": os.path.join(progs, "compute.c"),
        "bulk_io": os.path.join(progs, "bulk_io.c"),
    }
    loop_src = os.path.join(work, "syscall_loop.c")
    with open(loop_src, "w") as f:
        f.write(SYSCALL_LOOP_C)
    sources["syscall_loop"] = loop_src
    for name, src in sources.items():
        if not os.path.exists(src):
            raise BenchError(f"{src} not found (use --progs DIR)")
        out = os.path.join(work, name)
        p = run([gcc, "-static", "-O1", "-I", progs, "-o", out, src])
        if p.returncode != 0:
            raise BenchError(f"gcc failed for {src}:\n{p.stderr.decode(errors='replace')}")
        binaries[name] = out
    return binaries


def host_summary(detrec):
    p = run([detrec, "doctor"])
    lines = p.stdout.decode(errors="replace").splitlines()
    pick = [l for l in lines if not l.startswith("note:")]
    return "; ".join(pick) if pick else "(detrec doctor printed nothing)"


def bench_exit(detrec, iterations, batches):
    p = run([detrec, "bench-exit", "--json", "--iterations", str(iterations), "--batches", str(batches)])
    if p.returncode != 0:
        raise BenchError("detrec bench-exit failed: " + p.stderr.decode(errors="replace").strip())
    return json.loads(p.stdout)


def trace_bytes(directory):
    total = 0
    for root, _, files in os.walk(directory):
        for f in files:
            total += os.path.getsize(os.path.join(root, f))
    return total


def check(p, what, expect_out=None):
    if p.returncode != 0:
        err = p.stderr.decode(errors="replace").strip().splitlines()
        raise BenchError(f"{what} exited with status {p.returncode}: {err[-1] if err else ''}")
    if expect_out is not None and p.stdout != expect_out:
        raise BenchError(f"{what}: stdout differs from the recording's")


def new_result(name, argv, env=None):
    return {"name": name, "argv": argv, "env": env or [], "native": [], "record": [], "replay": [], "trace_bytes": []}


def one_round(detrec, result, r, runs, work):
    """Native, record and replay of one program, back to back."""
    name, argv = result["name"], result["argv"]
    t, p = timed(argv)
    check(p, f"{name} (native)")
    result["native"].append(t)

    trace = os.path.join(work, f"trace-{name}-{r}")
    # env: VAR=VALUE settings for detrec (a variant measured in the same run).
    prefix = ["env"] + result["env"] if result.get("env") else []
    t, p = timed(prefix + [detrec, "record", "-q", "-o", trace, "--"] + argv)
    check(p, f"detrec record {name}")
    recorded_out = p.stdout
    result["record"].append(t)
    result["trace_bytes"].append(trace_bytes(trace))

    t, p = timed(prefix + [detrec, "replay", trace])
    check(p, f"detrec replay {name}", expect_out=recorded_out)
    result["replay"].append(t)
    shutil.rmtree(trace, ignore_errors=True)
    print(f"  round {r + 1}/{runs} {name}: native {result['native'][-1]:.4f}s "
          f"record {result['record'][-1]:.4f}s replay {result['replay'][-1]:.4f}s",
          file=sys.stderr, flush=True)


def paired(a, b, f):
    """Median over rounds of f(a[i], b[i]), or None."""
    vals = [f(x, y) for x, y in zip(a, b)]
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def div(x, y):
    return x / y if y > 0 else None


def summarize(result):
    for k in ("native", "record", "replay"):
        result[k + "_median"] = statistics.median(result[k])
    result["trace_mib"] = statistics.median(result["trace_bytes"]) / 1048576
    # Ratios are medians of per-round ratios: the three runs of a round are
    # back to back, so a noisy neighbour tends to hit them alike.
    result["record_over_native"] = paired(result["record"], result["native"], div)
    result["replay_over_native"] = paired(result["replay"], result["native"], div)
    result["replay_over_record"] = paired(result["replay"], result["record"], div)
    return result


def ratio(x):
    return "-" if x is None else f"{x:.2f}"


def table(results):
    head = ["program", "native s", "record s", "replay s", "record/native", "replay/native",
            "replay/record", "trace MiB"]
    rows = []
    for r in results:
        rows.append([r["name"], f"{r['native_median']:.4f}", f"{r['record_median']:.4f}",
                     f"{r['replay_median']:.4f}", ratio(r["record_over_native"]),
                     ratio(r["replay_over_native"]), ratio(r["replay_over_record"]),
                     f"{r['trace_mib']:.1f}"])
    widths = [max(len(head[i]), *(len(row[i]) for row in rows)) for i in range(len(head))]

    def line(cells):
        return "| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                 for i, (c, w) in enumerate(zip(cells, widths))) + " |"
    out = [line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(row) for row in rows]
    return "\n".join(out)


def preemption_main(detrec, args):
    """Record time per syscall of programs whose slices need checkpoints,
    in bare exits, and how it grows with the heap (issue 12's figures)."""
    gcc = shutil.which("gcc")
    if not gcc:
        print("bench.py: gcc not found on PATH", file=sys.stderr)
        return 1
    work = tempfile.mkdtemp(prefix="detrec-bench-")
    calls = 2000
    try:
        bins = {}
        for name, text in (("heap_threads", HEAP_THREADS_C), ("heap_timer", HEAP_TIMER_C)):
            src = os.path.join(work, name + ".c")
            with open(src, "w") as f:
                f.write(text)
            out = os.path.join(work, name)
            p = run([gcc, "-static", "-O1", "-pthread", "-o", out, src])
            if p.returncode != 0:
                raise BenchError(f"gcc failed for {name}:\n{p.stderr.decode(errors='replace')}")
            bins[name] = out
        # (name, argv, syscalls made beyond its 0-call twin, env for detrec).
        # The *_eager rows copy a large checkpoint's pages at once
        # (DETREC_CHECKPOINTS=dirty-log) instead of before their next
        # write: the scheme before copy-before-write, in the same run.
        eager = ["DETREC_CHECKPOINTS=dirty-log"]
        plan = [
            ("threads_1mib", [bins["heap_threads"], "1", str(calls)], 2 * calls, None),
            ("threads_1mib_0", [bins["heap_threads"], "1", "0"], 0, None),
            ("threads_256mib", [bins["heap_threads"], "256", str(calls)], 2 * calls, None),
            ("threads_256mib_0", [bins["heap_threads"], "256", "0"], 0, None),
            ("timer_64mib", [bins["heap_timer"], "64", str(2 * calls), "1"], 2 * calls, None),
            ("timer_64mib_0", [bins["heap_timer"], "64", "0", "1"], 0, None),
            ("threads_1mib_eager", [bins["heap_threads"], "1", str(calls)], 2 * calls, eager),
            ("threads_1mib_eager_0", [bins["heap_threads"], "1", "0"], 0, eager),
            ("threads_256mib_eager", [bins["heap_threads"], "256", str(calls)], 2 * calls, eager),
            ("threads_256mib_eager_0", [bins["heap_threads"], "256", "0"], 0, eager),
        ]
        print(f"detrec bench --preemption, {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}, "
              f"{os.cpu_count()} CPUs", flush=True)
        print(f"host: {host_summary(detrec)}", flush=True)
        exit_before = bench_exit(detrec, args.exit_iterations, args.exit_batches)
        results = [new_result(name, argv, env) for name, argv, _, env in plan]
        for r in range(args.runs):
            for result in results:
                one_round(detrec, result, r, args.runs, work)
        results = [summarize(r) for r in results]
        exit_after = bench_exit(detrec, args.exit_iterations, args.exit_batches)
    except BenchError as e:
        print(f"bench.py: {e}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    by = {r["name"]: r for r in results}
    exit_us = statistics.median([exit_before["syscall"]["median_us"], exit_after["syscall"]["median_us"]])
    print()
    print(table(results))
    print()
    print(f"bare syscall exit: {exit_us:.2f} us (before {exit_before['syscall']['median_us']:.2f}, "
          f"after {exit_after['syscall']['median_us']:.2f})")
    figures = {}
    for name, _, n, _ in plan:
        if n == 0:
            continue
        base = by[name + "_0"]
        us = paired(by[name]["record"], base["record"], lambda x, y: (x - y) / n * 1e6)
        figures[name] = us / exit_us
        rep = paired(by[name]["replay"], base["replay"], lambda x, y: (x - y) / n * 1e6)
        print(f"{name}: recorded syscall {us:.2f} us = {us / exit_us:.2f} bare exits "
              f"(record minus its 0-call run, / {n}); replayed, which takes no checkpoints, "
              f"{rep:.2f} us = {rep / exit_us:.2f}")
    growth = paired(by["threads_256mib"]["record"], by["threads_1mib"]["record"], div)
    print(f"two threads, 256 MiB heap against 1 MiB: record {ratio(growth)}x")
    growth_eager = paired(by["threads_256mib_eager"]["record"], by["threads_1mib_eager"]["record"], div)
    print(f"the same with large checkpoints copied at once (DETREC_CHECKPOINTS=dirty-log, the scheme before): "
          f"record {ratio(growth_eager)}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": results, "bare_exit_us": exit_us, "exits_per_syscall": figures,
                       "heap_growth": growth, "heap_growth_eager": growth_eager}, f, indent=2)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--detrec", default=os.path.join(REPO, ".build", "release", "detrec"),
                    help="the detrec binary (default: REPO/.build/release/detrec)")
    ap.add_argument("--progs", default=os.path.join(REPO, "..", "shared", "acceptance", "progs"),
                    help="folder with compute.c, bulk_io.c and common.h (default: REPO/../shared/acceptance/progs)")
    ap.add_argument("--runs", type=int, default=5, help="runs of each mode per program; medians are reported (default 5)")
    ap.add_argument("--exit-iterations", type=int, default=10000,
                    help="round trips per batch for detrec bench-exit (default 10000)")
    ap.add_argument("--exit-batches", type=int, default=5, help="timed batches for detrec bench-exit (default 5)")
    ap.add_argument("--json", metavar="FILE", help="also write every figure and raw timing to FILE")
    ap.add_argument("--preemption", action="store_true",
                    help="measure preemption checkpoints instead: two threads making syscalls after "
                         "touching a 1 or 256 MiB heap, and syscalls with a timer armed over 64 MiB")
    args = ap.parse_args()
    if args.runs < 1:
        ap.error("--runs must be at least 1")

    detrec = os.path.abspath(args.detrec)
    if not os.access(detrec, os.X_OK):
        print(f"bench.py: {detrec} is not an executable; build first "
              f"(swift build -c release) or pass --detrec PATH", file=sys.stderr)
        return 2
    progs = os.path.abspath(args.progs)

    if args.preemption:
        return preemption_main(detrec, args)

    work = tempfile.mkdtemp(prefix="detrec-bench-")
    try:
        binaries = compile_programs(progs, work)
        when = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
        host = host_summary(detrec)
        cpu = platform.processor() or platform.machine()
        print(f"detrec bench, {when}, {os.cpu_count()} CPUs, Linux {platform.release()} {cpu}", flush=True)
        print(f"host: {host}", flush=True)
        load_before = os.getloadavg()
        print(f"runs per mode: {args.runs}, interleaved; times are medians, ratios medians of per-round ratios",
              flush=True)

        exit_before = bench_exit(detrec, args.exit_iterations, args.exit_batches)
        plan = [
            ("compute", [binaries["compute"]]),
            ("bulk_io", [binaries["bulk_io"]]),
            ("startup", [binaries["syscall_loop"], "0"]),
            ("syscall_loop", [binaries["syscall_loop"], str(SYSCALLS)]),
        ]
        results = [new_result(name, argv) for name, argv in plan]
        for _, argv in plan:
            run(argv)  # untimed: warms the page cache
        for r in range(args.runs):
            for result in results:
                one_round(detrec, result, r, args.runs, work)
        results = [summarize(r) for r in results]
        load_after = os.getloadavg()
        exit_after = bench_exit(detrec, args.exit_iterations, args.exit_batches)
    except BenchError as e:
        print(f"bench.py: {e}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)

    by = {r["name"]: r for r in results}
    loop, start = by["syscall_loop"], by["startup"]
    per_call = lambda x, y: (x - y) / SYSCALLS * 1e6
    rec_us = paired(loop["record"], loop["native"], per_call)
    rep_us = paired(loop["replay"], loop["native"], per_call)
    # The same minus detrec's fixed start-up cost (a run of the loop with 0 calls).
    rec_net_us = ((loop["record_median"] - start["record_median"])
                  - (loop["native_median"] - start["native_median"])) / SYSCALLS * 1e6
    rep_net_us = ((loop["replay_median"] - start["replay_median"])
                  - (loop["native_median"] - start["native_median"])) / SYSCALLS * 1e6
    exit_sys = statistics.median([exit_before["syscall"]["median_us"], exit_after["syscall"]["median_us"]])
    exit_exc = statistics.median([exit_before["exception"]["median_us"], exit_after["exception"]["median_us"]])

    print(f"load average (1 min) before {load_before[0]:.2f}, after {load_after[0]:.2f} on {os.cpu_count()} CPUs"
          + ("; the host was busy: expect noise" if max(load_before[0], load_after[0]) > 0.5 * (os.cpu_count() or 1)
             else ""))
    print()
    print(table(results))
    print()
    print(f"bare exit (detrec bench-exit, median of before/after): syscall {exit_sys:.2f} us, "
          f"#BP exception {exit_exc:.2f} us "
          f"(before {exit_before['syscall']['median_us']:.2f}/{exit_before['exception']['median_us']:.2f}, "
          f"after {exit_after['syscall']['median_us']:.2f}/{exit_after['exception']['median_us']:.2f})")
    print(f"recorded syscall: {rec_us:.2f} us = (record - native) / {SYSCALLS} (median over rounds); "
          f"{rec_us / exit_sys:.2f} x bare exit")
    print(f"replayed syscall: {rep_us:.2f} us = (replay - native) / {SYSCALLS} (median over rounds); "
          f"{rep_us / exit_sys:.2f} x bare exit")
    print(f"without start-up (minus the 0-call run): recorded {rec_net_us:.2f} us "
          f"({rec_net_us / exit_sys:.2f} x bare exit), replayed {rep_net_us:.2f} us "
          f"({rep_net_us / exit_sys:.2f} x bare exit)")

    comp, bulk = by["compute"], by["bulk_io"]
    rec_start = start["record_median"] - start["native_median"]
    rep_start = start["replay_median"] - start["native_median"]
    comp_rec_net = div(comp["record_median"] - rec_start, comp["native_median"])
    comp_rep_net = div(comp["replay_median"] - rep_start, comp["native_median"])
    rec_x, rep_x = rec_us / exit_sys, rep_us / exit_sys
    who = ("so the hypervisor's exit is most of the cost and detrec's own emulation and trace work the rest"
           if max(rec_x, rep_x) < 2 else
           "so detrec's own emulation and trace work cost more than the hypervisor's exit")
    print()
    print(
        f"Summary: pure computation (compute) takes {ratio(comp['record_over_native'])}x its native time "
        f"under record and {ratio(comp['replay_over_native'])}x under replay "
        f"({ratio(comp_rec_net)}x and {ratio(comp_rep_net)}x without detrec's fixed start-up of "
        f"{rec_start:.3f} s per record and {rep_start:.3f} s per replay, measured by the 0-call run): the guest "
        f"code runs unmodified on the vCPU. Bulk file I/O (bulk_io, a {bulk['trace_mib']:.1f} MiB trace) "
        f"takes {ratio(bulk['record_over_native'])}x native to record and {ratio(bulk['replay_over_native'])}x "
        f"to replay. The syscall-bound loop is the worst case, {ratio(loop['record_over_native'])}x native "
        f"recorded and {ratio(loop['replay_over_native'])}x replayed, since a native getppid takes a fraction "
        f"of a microsecond and every syscall under detrec exits to the host: one recorded syscall costs "
        f"{rec_x:.2f} bare exits and one replayed syscall {rep_x:.2f} ({exit_sys:.1f} us per bare syscall exit "
        f"on this host, a #BP exception exit {exit_exc / exit_sys:.2f} of that), {who}."
    )

    if args.json:
        doc = {
            "date": when,
            "host": host,
            "cpus": os.cpu_count(),
            "kernel": platform.release(),
            "detrec": detrec,
            "runs": args.runs,
            "load_average_before": load_before,
            "load_average_after": load_after,
            "syscalls": SYSCALLS,
            "programs": results,
            "bench_exit": {"before": exit_before, "after": exit_after,
                           "syscall_median_us": exit_sys, "exception_median_us": exit_exc},
            "recorded_syscall_us": rec_us,
            "replayed_syscall_us": rep_us,
            "recorded_syscall_net_us": rec_net_us,
            "replayed_syscall_net_us": rep_net_us,
            "recorded_syscall_over_bare_exit": rec_us / exit_sys,
            "replayed_syscall_over_bare_exit": rep_us / exit_sys,
        }
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
