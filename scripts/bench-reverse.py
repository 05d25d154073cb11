#!/usr/bin/env python3
"""Reverse execution against replaying from the start, for a long recording.

Records a program that makes EVENTS syscalls (getppid) and calls mark()
three times: at the middle, a few hundred events before the end, and at
the end; then, against `detrec replay --gdb-listen`, continues to the
last mark() and times over the raw gdb remote protocol:

  reverse-continue   `bc` to the previous mark() (a few hundred events back)
  reverse-continue   `bc` again, to the first mark() (about half the recording back)
  reverse-stepi      `bs` one instruction, inside a slice (its slice checkpoint)
  reverse-stepi      `bs` at the start of a slice (just after a syscall)

each against the baseline measured in the same run: `detrec replay` of
the whole trace (no gdb). Twice: with replay checkpoints (the default)
and without (DETREC_REPLAY_CHECKPOINTS=off: replays from the start).
`monitor stats` at the end says what going back cost. Not a test:
numbers depend on the host.

Usage: scripts/bench-reverse.py [--detrec PATH] [--events N] [--repeat R]
"""
import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

SOURCE = r"""
#include <unistd.h>
#include <sys/syscall.h>
__attribute__((noinline)) void mark(long i) { __asm__ volatile("" :: "r"(i)); }
__attribute__((noinline)) long after(long i) { __asm__ volatile("" :: "r"(i)); return i + 1; }
int main(void) {
  long n = EVENTS;
  for (long i = 0; i < n; i++) {
    syscall(SYS_getppid);
    if (i == n / 2 || i == n - 1 - NEAR || i == n - 1) { mark(i); after(i); }
  }
  write(1, "done\n", 5);
  return 0;
}
"""


class Remote:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=600)
        self.buf = b""

    def _read(self):
        while True:
            if b"#" in self.buf:
                start = self.buf.find(b"$")
                end = self.buf.find(b"#", start)
                if start >= 0 and end >= 0 and len(self.buf) >= end + 3:
                    payload = self.buf[start + 1:end]
                    self.buf = self.buf[end + 3:]
                    self.s.sendall(b"+")
                    return payload.decode(errors="replace")
            data = self.s.recv(65536)
            if not data:
                raise EOFError("stub closed the connection")
            self.buf += data

    def ask(self, payload):
        cs = sum(payload.encode()) % 256
        self.s.sendall(f"${payload}#{cs:02x}".encode())
        return self._read()


def rip(r):
    v = r.ask("p10")
    return int.from_bytes(bytes.fromhex(v), "little")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--detrec", default=".build/release/detrec")
    ap.add_argument("--events", type=int, default=100000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--near", type=int, default=300, help="events between the last two marks")
    opts = ap.parse_args()
    detrec = os.path.abspath(opts.detrec)
    work = tempfile.mkdtemp(prefix="detrec-bench-reverse-")
    try:
        c = os.path.join(work, "p.c")
        with open(c, "w") as f:
            f.write(SOURCE.replace("EVENTS", str(opts.events)).replace("NEAR", str(opts.near)))
        exe = os.path.join(work, "p")
        subprocess.run(["gcc", "-static", "-O1", "-o", exe, c], check=True)
        trace = os.path.join(work, "trace")
        subprocess.run([detrec, "record", "-q", "-o", trace, "--", exe], check=True, stdout=subprocess.DEVNULL)
        syms = {}
        for line in subprocess.run(["nm", exe], capture_output=True, text=True).stdout.splitlines():
            parts = line.split()
            if len(parts) == 3:
                syms[parts[2]] = int(parts[0], 16)

        full = []
        for _ in range(opts.repeat):
            t = time.monotonic()
            subprocess.run([detrec, "replay", trace], check=True, stdout=subprocess.DEVNULL)
            full.append(time.monotonic() - t)

        def session(env, uncovered=False):
            times = {"near": [], "half": [], "bs_in": [], "bs_start": []}
            stats, when = None, None
            for _ in range(opts.repeat):
                server = subprocess.Popen([detrec, "replay", "--gdb-listen", "127.0.0.1:0", trace],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
                line = server.stderr.readline()
                port = int(re.search(r"127\.0\.0\.1:(\d+)", line).group(1))
                r = Remote(port)
                r.ask("qSupported:swbreak+")
                mark = syms["mark"]
                assert r.ask(f"Z0,{mark:x},1") == "OK"
                for _ in range(3):
                    stop = r.ask("c")
                    assert "swbreak" in stop, stop
                when = bytes.fromhex(r.ask("qRcmd," + b"when".hex())).decode().strip()
                target = mark
                if uncovered:
                    # A breakpoint the forward run never had: after(), called after each mark().
                    target = syms["after"]
                    assert r.ask(f"z0,{mark:x},1") == "OK"
                    assert r.ask(f"Z0,{target:x},1") == "OK"
                for name in ("near", "half"):
                    t = time.monotonic()
                    back = r.ask("bc")
                    times[name].append(time.monotonic() - t)
                    assert "swbreak" in back and rip(r) == target, back
                if uncovered:
                    stats = bytes.fromhex(r.ask("qRcmd," + b"stats".hex())).decode().strip()
                    r.s.sendall(b"$k#6b")
                    server.wait(timeout=120)
                    server.stderr.close()
                    continue
                assert r.ask(f"z0,{mark:x},1") == "OK"
                # One instruction back inside the slice: the call of mark().
                t = time.monotonic()
                r.ask("bs")
                times["bs_in"].append(time.monotonic() - t)
                assert rip(r) != mark
                # Step on to just past the next syscall (the start of a slice) and go back over it.
                while True:
                    before = rip(r)
                    code = bytes.fromhex(r.ask(f"m{before:x},2"))
                    r.ask("s")
                    if code == b"\x0f\x05":
                        break
                t = time.monotonic()
                r.ask("bs")
                times["bs_start"].append(time.monotonic() - t)
                assert rip(r) == before, (hex(rip(r)), hex(before))
                stats = bytes.fromhex(r.ask("qRcmd," + b"stats".hex())).decode().strip()
                r.s.sendall(b"$k#6b")   # no reply: the stub ends
                server.wait(timeout=120)
                server.stderr.close()
            return times, stats, when

        base = min(full)
        print(f"recording: {opts.events} getppid calls, marks at {opts.events // 2}, {opts.events - 1 - opts.near}, {opts.events - 1}")
        print(f"replay from the start (no gdb), the baseline: {base:.3f} s")
        for label, extra, uncovered in (
                ("with replay checkpoints, breakpoint inserted through the forward run", {}, False),
                ("with replay checkpoints, breakpoint (on after()) inserted only at the end", {}, True),
                ("without (DETREC_REPLAY_CHECKPOINTS=off)", {"DETREC_REPLAY_CHECKPOINTS": "off"}, False)):
            times, stats, when = session(dict(os.environ, **extra), uncovered)
            print(f"{label}: at the last mark, {when}")
            for key, name in (("near", f"reverse-continue to the previous hit ({opts.near} events back)"),
                              ("half", "reverse-continue to the hit before (about half the recording back)"),
                              ("bs_in", "reverse-stepi inside a slice"),
                              ("bs_start", "reverse-stepi over a syscall (slice start)")):
                if not times[key]:
                    continue
                b = min(times[key])
                print(f"  {name}: {b:.3f} s ({b / base:.3f} x the baseline)")
            print(f"  monitor stats: {stats}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
