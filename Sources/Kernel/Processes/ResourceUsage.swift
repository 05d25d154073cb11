import Glibc

/// What struct rusage counts for a thread, a process or its reaped
/// children: CPU time split into user and system, page faults, block I/O
/// and context switches, plus the largest resident set.
///
/// Every recorded thread runs on detrec's one host thread, so the host has
/// no per-guest figures. Recording measures them: `UsageAccounting` reads
/// the host thread's own usage (RUSAGE_THREAD) whenever the vCPU changes
/// guest thread and charges the difference to the thread that ran. The
/// figures reach the guest only through host calls (getrusage, times,
/// wait4's rusage), whose bytes the trace keeps: replay reads no clock
/// and gets what the recording measured.
public struct ResourceUsage: Equatable, Sendable {
    public var userNanoseconds: Int64 = 0, systemNanoseconds: Int64 = 0
    public var minorFaults: Int64 = 0, majorFaults: Int64 = 0
    public var blocksIn: Int64 = 0, blocksOut: Int64 = 0
    public var voluntarySwitches: Int64 = 0, involuntarySwitches: Int64 = 0
    /// ru_maxrss (KiB): the largest, not a sum.
    public var maxResidentKilobytes: Int64 = 0

    public init() {}

    /// The counters added, the resident sets' larger kept (Linux's cmaxrss).
    static func + (a: ResourceUsage, b: ResourceUsage) -> ResourceUsage {
        var s = ResourceUsage()
        s.userNanoseconds = a.userNanoseconds &+ b.userNanoseconds
        s.systemNanoseconds = a.systemNanoseconds &+ b.systemNanoseconds
        s.minorFaults = a.minorFaults &+ b.minorFaults
        s.majorFaults = a.majorFaults &+ b.majorFaults
        s.blocksIn = a.blocksIn &+ b.blocksIn
        s.blocksOut = a.blocksOut &+ b.blocksOut
        s.voluntarySwitches = a.voluntarySwitches &+ b.voluntarySwitches
        s.involuntarySwitches = a.involuntarySwitches &+ b.involuntarySwitches
        s.maxResidentKilobytes = max(a.maxResidentKilobytes, b.maxResidentKilobytes)
        return s
    }

    static func += (a: inout ResourceUsage, b: ResourceUsage) { a = a + b }

    /// The counters `later` has beyond `self` (never negative).
    func elapsed(until later: ResourceUsage) -> ResourceUsage {
        var d = ResourceUsage()
        d.userNanoseconds = max(0, later.userNanoseconds &- userNanoseconds)
        d.systemNanoseconds = max(0, later.systemNanoseconds &- systemNanoseconds)
        d.minorFaults = max(0, later.minorFaults &- minorFaults)
        d.majorFaults = max(0, later.majorFaults &- majorFaults)
        d.blocksIn = max(0, later.blocksIn &- blocksIn)
        d.blocksOut = max(0, later.blocksOut &- blocksOut)
        d.voluntarySwitches = max(0, later.voluntarySwitches &- voluntarySwitches)
        d.involuntarySwitches = max(0, later.involuntarySwitches &- involuntarySwitches)
        return d
    }

    /// struct rusage (144 bytes): two timevals, then 14 longs.
    var bytes: [UInt8] {
        func timeval(_ ns: Int64) -> [UInt8] { Bytes.u64(UInt64(bitPattern: ns / 1_000_000_000)) + Bytes.u64(UInt64(bitPattern: ns % 1_000_000_000 / 1000)) }
        let longs: [Int64] = [maxResidentKilobytes, 0, 0, 0, minorFaults, majorFaults, 0, blocksIn, blocksOut, 0, 0, 0,
                              voluntarySwitches, involuntarySwitches]
        return timeval(userNanoseconds) + timeval(systemNanoseconds) + longs.flatMap { Bytes.u64(UInt64(bitPattern: $0)) }
    }

    /// Nanoseconds as clock ticks (USER_HZ, 100 a second), as times() gives them.
    static func ticks(_ ns: Int64) -> Int64 { ns / 10_000_000 }

    /// The host's getrusage(`who`: 0 the process, 1 the thread) (recording only).
    static func ofHost(_ who: Int32) -> ResourceUsage {
        var r = rusage()
        guard withUnsafeMutablePointer(to: &r, { hostSyscall(SYS.getrusage, Int(who), Int(bitPattern: $0)) }) == 0 else {
            return ResourceUsage()
        }
        var u = ResourceUsage()
        u.userNanoseconds = Int64(r.ru_utime.tv_sec) * 1_000_000_000 + Int64(r.ru_utime.tv_usec) * 1000
        u.systemNanoseconds = Int64(r.ru_stime.tv_sec) * 1_000_000_000 + Int64(r.ru_stime.tv_usec) * 1000
        u.minorFaults = Int64(r.ru_minflt); u.majorFaults = Int64(r.ru_majflt)
        u.blocksIn = Int64(r.ru_inblock); u.blocksOut = Int64(r.ru_oublock)
        u.voluntarySwitches = Int64(r.ru_nvcsw); u.involuntarySwitches = Int64(r.ru_nivcsw)
        u.maxResidentKilobytes = Int64(r.ru_maxrss)
        return u
    }
}

/// A process's share: the threads that ended (their usage stays the
/// process's, as Linux's signal_struct keeps it), the children it reaped
/// (cutime and the rest), and, once it ended, its total for the parent's wait.
struct ProcessUsage {
    var endedThreads = ResourceUsage()
    var children = ResourceUsage()
    /// Self and reaped children at its end (wait4's rusage, RUSAGE_BOTH).
    var atEnd: ResourceUsage?
}

/// Charges the host thread's usage to the guest thread on the vCPU
/// (recording only: replay never starts it, and then does nothing).
final class UsageAccounting {
    private var started = false
    /// The host thread's usage at the last charge.
    private var last = ResourceUsage()
    /// Who runs since then.
    private weak var charged: GuestThread?

    /// Recording begins with `thread` on the vCPU.
    func start(_ thread: GuestThread) {
        guard !started else { return }
        started = true
        last = ResourceUsage.ofHost(1)
        charged = thread
    }

    /// The vCPU goes to `next`: what ran since the last charge is the
    /// previous thread's. Cheap when the thread stays.
    func switching(to next: GuestThread?) {
        guard started, next !== charged else { return }
        bringUpToDate()
        charged = next
    }

    /// Charges what ran until now, so a thread's figures are current.
    func bringUpToDate() {
        guard started else { return }
        let now = ResourceUsage.ofHost(1)
        charged?.usage += last.elapsed(until: now)
        last = now
    }

    /// exec gave the process `fresh` for its threads: the exec'ing one's
    /// usage goes on in it, the others' stays the process's.
    func replaced(_ old: [GuestThread], execing: GuestThread, with fresh: GuestThread, in p: Process) {
        bringUpToDate()
        for t in old where t !== execing { p.usage.endedThreads += t.usage }
        fresh.usage = execing.usage
        if charged === execing || charged == nil { charged = fresh }
    }

    /// The guest's largest resident set: detrec's, which holds the guest's
    /// memory (0 in replay, which never asks the host).
    func maxResident() -> Int64 { started ? ResourceUsage.ofHost(0).maxResidentKilobytes : 0 }
}

extension Process {
    /// Its threads' usage and its ended threads' (RUSAGE_SELF), with
    /// detrec's resident set.
    func ownUsage() -> ResourceUsage {
        var u = threads.reduce(usage.endedThreads) { $0 + $1.usage }
        u.maxResidentKilobytes = family.accounting.maxResident()
        return u
    }

    /// A thread leaves: its usage stays with the process.
    func threadLeft(_ thread: GuestThread) {
        family.accounting.bringUpToDate()
        usage.endedThreads += thread.usage
        thread.usage = ResourceUsage()
    }

    /// The process ended: its total (with its reaped children's) waits for the parent.
    func usageEnded() {
        family.accounting.bringUpToDate()
        var total = ownUsage() + usage.children
        total.maxResidentKilobytes = max(total.maxResidentKilobytes, usage.children.maxResidentKilobytes)
        usage.atEnd = total
    }

    /// The parent reaped `child` with a wait: its total joins the parent's children's.
    func reaped(_ child: Process) {
        if let total = child.usage.atEnd { usage.children += total }
    }
}

/// getrusage and times, from the accounting; wait4's and waitid's rusage.
enum ResourceUsageSyscalls {
    static let RUSAGE_SELF: Int32 = 0, RUSAGE_CHILDREN: Int32 = -1, RUSAGE_THREAD: Int32 = 1

    static func register(_ t: inout SyscallTable) {
        t.add(SYS.getrusage, .host, note: "per recorded process and thread, measured on detrec's host thread while each ran", getrusage)
        t.add(SYS.times, .host, note: "per recorded process, measured on detrec's host thread while each ran", times)
    }

    static func getrusage(_ c: SyscallCall) throws -> Int64 {
        let who = c.int(0), address = c.arg(1)
        guard who == RUSAGE_SELF || who == RUSAGE_CHILDREN || who == RUSAGE_THREAD else { throw Errno.inval }
        try c.checkWritable(address, count: 144)
        let p = c.process, thread = p.current
        return try c.host { effects throws(Errno) -> Int64 in
            p.family.accounting.bringUpToDate()
            var u: ResourceUsage
            switch who {
            case RUSAGE_SELF: u = p.ownUsage()
            case RUSAGE_THREAD:
                u = thread.usage
                u.maxResidentKilobytes = p.family.accounting.maxResident()
            default: u = p.usage.children
            }
            try effects.write(address, u.bytes)
            return 0
        }
    }

    /// times(2): struct tms (user, system, children's user and system, in
    /// clock ticks), and the host's tick count as the result.
    static func times(_ c: SyscallCall) throws -> Int64 {
        let address = c.arg(0)
        if address != 0 { try c.checkWritable(address, count: 32) }
        let p = c.process
        return try c.host { effects throws(Errno) -> Int64 in
            let elapsed = hostSyscall(SYS.times, 0)
            if address != 0 {
                p.family.accounting.bringUpToDate()
                let own = p.ownUsage(), children = p.usage.children
                let fields = [own.userNanoseconds, own.systemNanoseconds, children.userNanoseconds, children.systemNanoseconds]
                try effects.write(address, fields.flatMap { Bytes.u64(UInt64(bitPattern: ResourceUsage.ticks($0))) })
            }
            return elapsed
        }
    }

    /// The rusage a wait stores for `child` (RUSAGE_BOTH: its own and its
    /// reaped children's), through the trace.
    static func storeForWait(_ c: SyscallCall, _ address: UInt64, of child: Process) throws {
        guard address != 0 else { return }
        try c.checkWritable(address, count: 144)
        _ = try c.host { effects throws(Errno) -> Int64 in
            let total = child.usage.atEnd ?? {
                child.family.accounting.bringUpToDate()
                return child.ownUsage() + child.usage.children
            }()
            try effects.write(address, total.bytes)
            return 0
        }
    }
}
