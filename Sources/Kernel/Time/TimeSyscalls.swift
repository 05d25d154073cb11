/// Clocks and sleeps: performed on the host while recording (so a recorded
/// sleep really sleeps), replayed from the trace without waiting.
enum TimeSyscalls {
    static func register(_ t: inout SyscallTable) {
        // CPU clocks of the recording's processes and threads are detrec's (`CPUClocks`).
        t.add(SYS.clock_gettime, .host, note: "CPU clocks of recorded processes and threads are detrec's") { c in
            try performPassthrough(c.withArgument(0, UInt64(UInt32(bitPattern: try CPUClocks.hostClock(c, c.int(0))))), [.value, .out(16)])
        }
        t.add(SYS.clock_getres, .host, note: "CPU clocks of recorded processes and threads are detrec's") { c in
            try performPassthrough(c.withArgument(0, UInt64(UInt32(bitPattern: try CPUClocks.hostClock(c, c.int(0))))), [.value, .outOrNull(16)])
        }
        t.add(SYS.gettimeofday, passthrough(.outOrNull(16), .outOrNull(8)))
        t.add(SYS.time, passthrough(.outOrNull(8)))
        // Recorded children are emulated, not host processes of detrec's, and
        // all recorded processes run on detrec's one thread: the host's
        // figures are detrec's own, and its children's are zero.
        t.add(SYS.times, passthrough(.outOrNull(32)), note: "detrec's CPU times; the children's are zero (recorded children are not host processes)")
        t.add(SYS.getrusage, passthrough(.value, .out(144)), note: "detrec's usage; RUSAGE_CHILDREN is zeros (recorded children are not host processes)")
    }
}
