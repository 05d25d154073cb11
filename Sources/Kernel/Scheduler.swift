import Glibc

/// Which thread runs next while recording. Threads switch only where the
/// running one makes a syscall: when it blocks, exits, yields, or has made
/// `slice` syscalls in a row. The choice is logged implicitly (each event
/// carries its thread), so replay follows the trace, not this policy.
public enum Scheduler {
    public enum Reason { case syscallDone, blocked, exited, yielded }

    public static var slice = 64

    public static func choose(_ process: Process, reason: Reason) throws -> Int32 {
        let current = process.current
        let limit = process.chaos?.slice ?? slice
        // The common case, decided without looking at the other threads.
        if reason == .syscallDone, current.syscallsInSlice < limit,
           process.threads.contains(where: { $0 === current }), process.canRun(current) {
            return current.tid
        }
        // Threads of stopped processes stay off the vCPU (JobControl).
        let live = process.family.processes.filter { $0.zombieStatus == nil }
        let entries = live.filter { $0.stoppedBy == nil }.flatMap { p in p.threads.map { (owner: p, thread: $0) } }
        let threads = entries.map(\.thread)
        // A parked wait whose timeout has passed may run even while other
        // threads compute: a futex wait returns ETIMEDOUT, a descriptor or
        // signal wait runs again and finds its deadline. Only the thread
        // picked is marked, as it resumes at once (a wake in between would
        // count it differently on replay).
        let now = monotonicNow()
        func expired(_ t: GuestThread) -> Bool {
            guard let b = t.blocked, b.result == nil, let deadline = t.wakeDeadline else { return false }
            return deadline <= now
        }
        func eligible(_ e: (owner: Process, thread: GuestThread)) -> Bool {
            (e.owner.canRun(e.thread) || (e.owner.stoppedBy == nil && expired(e.thread)))
                && !(e.thread === current && reason == .blocked)
        }
        func pick(_ t: GuestThread) -> Int32 {
            if expired(t) { t.blocked?.result = -Int64(ETIMEDOUT) }
            return t.tid
        }
        if var chaos = process.chaos {
            // Chaos mode: a random runnable thread, and a random slice for it.
            let candidates = entries.filter(eligible).map(\.thread)
            if !candidates.isEmpty {
                let chosen = candidates[Int(chaos.next() % UInt64(candidates.count))]
                chaos.slice = 1 + Int(chaos.next() % 16)
                process.chaos = chaos
                return pick(chosen)
            }
        }
        // Round-robin from the thread after the current one; the current one last.
        let start = (threads.firstIndex { $0 === current } ?? -1) + 1
        for k in 0..<entries.count {
            let e = entries[(start + k) % entries.count]
            if eligible(e) { return pick(e.thread) }
        }
        // Everyone waits: for a descriptor (the host's poll blocks until one
        // is ready or the earliest futex timeout), or for a timeout.
        let fdWaiters = threads.filter { $0.blocked?.hostFD != nil }
        let waiting = threads.filter { $0.wakeDeadline != nil }
        if !fdWaiters.isEmpty {
            var set = fdWaiters.map { pollfd(fd: $0.blocked?.hostFD ?? -1, events: $0.blocked?.events ?? 0, revents: 0) }
            let earliest = waiting.compactMap { $0.wakeDeadline }.min()
            let timeout: Int32 = earliest.map { Int32(clamping: Int(max(0, ($0 - monotonicNow()) * 1000) + 1)) } ?? -1
            if poll(&set, nfds_t(set.count), timeout) > 0, let i = set.firstIndex(where: { $0.revents != 0 }) {
                return fdWaiters[i].tid
            }
        }
        if let next = waiting.min(by: { ($0.wakeDeadline ?? 0) < ($1.wakeDeadline ?? 0) }),
           let deadline = next.wakeDeadline {
            let now = monotonicNow()
            if deadline > now { TimerSyscalls.nap(deadline - now) }
            next.blocked?.result = -Int64(ETIMEDOUT)
            return next.tid
        }
        var waits = threads.compactMap { t in t.blocked.map { "thread \(t.tid) on futex 0x\(String($0.futex, radix: 16))" } }
        waits += live.compactMap { p in p.stoppedBy.map { "process \(p.pid) stopped by \(Signals.name($0))" } }
        throw RunStopped("deadlock: every thread is blocked (\(waits.joined(separator: ", "))) and none has a timeout")
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
