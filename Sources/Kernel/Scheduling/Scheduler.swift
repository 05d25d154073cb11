import Glibc

/// Which thread runs next while recording. Threads switch only where the
/// running one makes a syscall: when it blocks, exits, yields, or has made
/// `slice` syscalls in a row. The choice is logged implicitly (each event
/// carries its thread), so replay follows the trace, not this policy.
public enum Scheduler {
    public enum Reason { case syscallDone, blocked, exited, yielded }

    public static var slice = 64

    /// `woke` runs whenever a wait on the host ends while every thread
    /// waits (recording): it makes pending what came due (timers, host
    /// signals) and says true when the recording must end.
    public static func choose(_ process: Process, reason: Reason, woke: () throws -> Bool = { false }) throws -> Int32 {
        let current = process.current
        let limit = process.chaos?.slice ?? slice
        // The common case, decided without looking at the other threads.
        if reason == .syscallDone, current.syscallsInSlice < limit,
           process.threads.contains(where: { $0 === current }), process.canRun(current) {
            return current.tid
        }
        var parkedJustNow = reason == .blocked
        while true {
            // Threads of stopped processes stay off the vCPU (JobControl).
            let live = process.family.processes.filter { $0.zombieStatus == nil }
            let entries = live.filter { $0.stoppedBy == nil }.flatMap { p in p.threads.map { (owner: p, thread: $0) } }
            let threads = entries.map(\.thread)
            func eligible(_ e: (owner: Process, thread: GuestThread)) -> Bool {
                e.owner.canRun(e.thread) && !(e.thread === current && parkedJustNow)
            }
            if var chaos = process.chaos {
                // Chaos mode: a random runnable thread, and a random slice for it.
                let candidates = entries.filter(eligible).map(\.thread)
                if !candidates.isEmpty {
                    let pick = candidates[Int(chaos.next() % UInt64(candidates.count))]
                    chaos.slice = 1 + Int(chaos.next() % 16)
                    process.chaos = chaos
                    return pick.tid
                }
            }
            // Round-robin from the thread after the current one; the current one last.
            let start = (threads.firstIndex { $0 === current } ?? -1) + 1
            for k in 0..<entries.count {
                let e = entries[(start + k) % entries.count]
                if eligible(e) { return e.thread.tid }
            }
            if parkedJustNow, entries.contains(where: { $0.thread === current && $0.owner.canRun(current) }) {
                return current.tid
            }
            parkedJustNow = false
            // Everyone waits: on the host until a descriptor one of them waits
            // for is ready, the earliest timeout or timer, or a host signal.
            let hostWaits = threads.compactMap { $0.blocked?.hostWait }
            var set = hostWaits.flatMap(\.descriptors)
            let deadlines = threads.compactMap(\.wakeDeadline)
                + live.compactMap { $0.earliestTimerDeadline().map { MonotonicInstant(doubleSeconds: $0) } }
            let earliest = deadlines.min()
            let signalWaiters = threads.contains { if case .signals = $0.blocked?.condition { return true } else { return false } }
            if set.isEmpty && earliest == nil && !signalWaiters {
                var waits = threads.compactMap { t in t.blocked.map { "thread \(t.tid) \(describe($0.condition))" } }
                waits += live.compactMap { p in p.stoppedBy.map { "process \(p.pid) stopped by \(Signals.name($0))" } }
                waits += threads.compactMap { t in t.trace?.stop.map { _ in "thread \(t.tid) in a ptrace stop" } }
                throw RunStopped("deadlock: every thread is blocked (\(waits.joined(separator: ", "))) and none has a timeout")
            }
            if case .failed(let e) = HostWake.wait(&set, until: earliest) {
                throw RunStopped("waiting for the program's descriptors failed on the host: errno \(e)")
            }
            if try woke() { return current.tid }
        }
    }

    static func describe(_ condition: WaitCondition) -> String {
        switch condition {
        case .futex(let address, _, _): return "on futex 0x\(String(address, radix: 16))"
        case .host(let h): return "on host descriptors \(h.descriptors.map(\.fd))"
        case .guest: return "for a child"
        case .guestUntil: return "for guest state (System V IPC)"
        case .killable: return "for a vfork child to exec or exit"
        case .signals: return "for a signal"
        }
    }

    /// Chaos mode's source of choices (SplitMix64): reproducible from its
    /// seed, which the trace stores, though replay never needs it.
    public struct Chaos {
        public var state: UInt64
        public var slice = 1
        public init(seed: UInt64) { state = seed }
        public mutating func next() -> UInt64 {
            state &+= 0x9e37_79b9_7f4a_7c15
            var z = state
            z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
            z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
            return z ^ (z >> 31)
        }
    }

    public static func monotonicNow() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}
