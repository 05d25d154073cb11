/// ioprio_get and ioprio_set: a process of the recording has its own I/O
/// priority (`ProcessAttributes.ioPriority`), so one that lowers its own
/// leaves detrec, which performs every recorded process's I/O, alone.
/// The checks are Linux's ioprio_check_cap (6.x); IOPRIO_WHO_USER looks
/// at the recording's processes, all of which are the recorded user's.
enum IOPriority {
    static let WHO_PROCESS: Int32 = 1, WHO_PGRP: Int32 = 2, WHO_USER: Int32 = 3
    static let CLASS_NONE: Int32 = 0, CLASS_RT: Int32 = 1, CLASS_BE: Int32 = 2, CLASS_IDLE: Int32 = 3
    /// What ioprio_best takes an unset priority as: best effort, level 4.
    static let defaultValue: Int32 = CLASS_BE << 13 | 4

    static func register(_ t: inout SyscallTable) {
        t.add(SYS.ioprio_get, .emulated, note: "per recorded process; IOPRIO_WHO_USER over the recording's processes", get)
        t.add(SYS.ioprio_set, .emulated, note: "per recorded process; IOPRIO_CLASS_RT needs CAP_SYS_NICE or CAP_SYS_ADMIN on the host", set)
    }

    /// The live processes `which` and `who` name.
    static func targets(_ c: SyscallCall) throws(Errno) -> [Process] {
        let who = c.int(1)
        let live = c.process.family.processes.filter { $0.zombieStatus == nil }
        switch c.int(0) {
        case WHO_PROCESS:
            // A thread id names its process here (the priority is kept per process).
            if who == 0 { return [c.process] }
            return live.filter { $0.pid == who || $0.threads.contains { $0.tid == who } }
        case WHO_PGRP:
            return ProcessGroups.members(c.process.family, who == 0 ? c.process.processGroup : who).filter { $0.zombieStatus == nil }
        case WHO_USER:
            let uid = who == 0 ? c.process.uid : UInt32(bitPattern: who)
            return live.filter { $0.uid == uid }
        default:
            throw .inval
        }
    }

    static func get(_ c: SyscallCall) throws -> Int64 {
        let found = try targets(c)
        guard !found.isEmpty else { throw Errno.srch }
        // One process: its value as set. Several: ioprio_best, which reads an
        // unset priority as the default and prefers the lower class number.
        if c.int(0) == WHO_PROCESS { return Int64(found[0].ioPriority) }
        return Int64(found.map { $0.ioPriority }.reduce(nil as Int32?) { best, p in
            let p = p >> 13 == CLASS_NONE ? defaultValue : p
            guard let best else { return p }
            return (p >> 13, p & 0x1fff) < (best >> 13, best & 0x1fff) ? p : best
        } ?? defaultValue)
    }

    static func set(_ c: SyscallCall) throws -> Int64 {
        let value = c.int(2)
        let priorityClass = value >> 13 & 0x7, level = value & 0x7
        switch priorityClass {
        case CLASS_RT:
            guard ProcessSyscalls.hasCapability(c, Credentials.CAP_SYS_NICE)
                    || ProcessSyscalls.hasCapability(c, Credentials.CAP_SYS_ADMIN) else { throw Errno.perm }
        case CLASS_BE, CLASS_IDLE:
            break
        case CLASS_NONE:
            guard level == 0 else { throw Errno.inval }
        default:
            throw Errno.inval
        }
        let found = try targets(c)
        guard !found.isEmpty else { throw Errno.srch }
        // The kernel keeps an unsigned short: higher bits are dropped.
        for p in found { p.ioPriority = value & 0xffff }
        return 0
    }
}
