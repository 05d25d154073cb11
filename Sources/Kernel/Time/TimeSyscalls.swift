/// Clocks and sleeps: performed on the host while recording (so a recorded
/// sleep really sleeps), replayed from the trace without waiting.
enum TimeSyscalls {
    static func register(_ t: inout SyscallTable) {
        t.add(SYS.clock_gettime, passthrough(.value, .out(16)))
        t.add(SYS.clock_getres, passthrough(.value, .outOrNull(16)))
        t.add(SYS.gettimeofday, passthrough(.outOrNull(16), .outOrNull(8)))
        t.add(SYS.time, passthrough(.outOrNull(8)))
        t.add(SYS.times, passthrough(.outOrNull(32)))
        t.add(SYS.getrusage, passthrough(.value, .out(144)))
    }
}
