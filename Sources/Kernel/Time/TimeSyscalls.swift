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
        // getrusage and times: per recorded process (ResourceUsageSyscalls).
        ResourceUsageSyscalls.register(&t)
    }
}
