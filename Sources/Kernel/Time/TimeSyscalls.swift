/// Clocks and sleeps: performed on the host while recording (so a recorded
/// sleep really sleeps), replayed from the trace without waiting.
enum TimeSyscalls {
    static func register(_ t: inout SyscallTable) {
        // CPU clocks of the recording's processes and threads: `CPUClocks`.
        t.add(SYS.clock_gettime, .host, note: "CPU clocks of recorded processes and threads: the time charged to each", CPUClocks.gettime)
        t.add(SYS.clock_getres, .host, note: "CPU clocks of recorded processes and threads: detrec's of the same kind") { c in
            try performPassthrough(c.withArgument(0, UInt64(UInt32(bitPattern: try CPUClocks.hostClock(c, c.int(0))))), [.value, .outOrNull(16)])
        }
        t.add(SYS.gettimeofday, passthrough(.outOrNull(16), .outOrNull(8)))
        t.add(SYS.time, passthrough(.outOrNull(8)))
        // getrusage and times: per recorded process (ResourceUsageSyscalls).
        ResourceUsageSyscalls.register(&t)
    }
}
