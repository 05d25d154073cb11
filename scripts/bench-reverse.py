#!/usr/bin/env python3
"""Reverse execution against replaying from the start, for a long recording.

Records a program that makes EVENTS syscalls (getppid) and calls mark()
twice, at the middle and at the end; then, against `detrec replay
--gdb-listen`, continues to the second mark() and times over the raw gdb
remote protocol:

  reverse-continue   `bc` back to the first mark() (half the recording back)
  reverse-stepi      `bs` one instruction, inside a slice (its checkpoint)
  reverse-stepi      `bs` at the start of a slice (just after a syscall)

each against the baseline measured in the same run: `detrec replay` of
the whole trace (no gdb). Not a test: numbers depend on the host.

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
__attribute__((noinline)) long after(long i) { return i + 1; }
int main(void) {
  long n = EVENTS;
  for (long i = 0; i < n; i++) {
    syscall(SYS_getppid);
    if (i == n / 2 || i == n - 1) { mark(i); after(i); }
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
    opts = ap.parse_args()
    detrec = os.path.abspath(opts.detrec)
    work = tempfile.mkdtemp(prefix="detrec-bench-reverse-")
    try:
        c = os.path.join(work, "p.c")
        with open(c, "w") as f:
            f.write(SOURCE.replace("EVENTS", str(opts.events)))
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

        rc_times, bs_in, bs_start, events = [], [], [], None
        for _ in range(opts.repeat):
            server = subprocess.Popen([detrec, "replay", "--gdb-listen", "127.0.0.1:0", trace],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            line = server.stderr.readline()
            port = int(re.search(r"127\.0\.0\.1:(\d+)", line).group(1))
            r = Remote(port)
            r.ask("qSupported:swbreak+")
            mark = syms["mark"]
            assert r.ask(f"Z0,{mark:x},1") == "OK"
            r.ask("c")
            second = r.ask("c")
            assert "swbreak" in second, second
            if events is None:
                events = bytes.fromhex(r.ask("qRcmd," + b"when".hex())).decode().strip()
            t = time.monotonic()
            back = r.ask("bc")
            rc_times.append(time.monotonic() - t)
            assert "swbreak" in back and rip(r) == mark, back
            # One instruction back inside the slice: the call of mark().
            t = time.monotonic()
            r.ask("bs")
            bs_in.append(time.monotonic() - t)
            assert rip(r) != mark
            # Step on to just past the next syscall (the start of a slice) and go back over it.
            assert r.ask(f"z0,{mark:x},1") == "OK"
            while True:
                before = rip(r)
                code = bytes.fromhex(r.ask(f"m{before:x},2"))
                r.ask("s")
                if code == b"\x0f\x05":
                    break
            t = time.monotonic()
            r.ask("bs")
            bs_start.append(time.monotonic() - t)
            assert rip(r) == before, (hex(rip(r)), hex(before))
            r.s.sendall(b"$k#6b")   # no reply: the stub ends
            server.wait(timeout=60)

        def best(xs):
            return min(xs)
        base = best(full)
        print(f"recording: {opts.events} getppid calls; {events}")
        print(f"replay from the start (no gdb), the baseline: {base:.3f} s")
        for name, xs in (("reverse-continue to the previous hit (half the trace back)", rc_times),
                         ("reverse-stepi inside a slice", bs_in),
                         ("reverse-stepi over a syscall (slice start)", bs_start)):
            print(f"{name}: {best(xs):.3f} s ({best(xs) / base:.2f} x the baseline)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
