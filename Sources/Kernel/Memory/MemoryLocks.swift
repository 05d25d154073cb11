import Glibc
import KVMUser

/// mlock, mlock2, munlock, mlockall, munlockall and mincore as mm/mlock.c
/// and mm/mincore.c have them. Locking sets VM_LOCKED (and
/// VM_LOCKONFAULT) on the mappings, which madvise and /proc honour, and
/// faults the pages in; RLIMIT_MEMLOCK binds unless the process has
/// CAP_IPC_LOCK (`lockLimit`).
/// Nothing is locked on the host: guest memory is detrec's, and a
/// recording never swaps.
enum MemoryLocks {
    static let MLOCK_ONFAULT: Int32 = 1
    static let MCL_CURRENT: Int32 = 1, MCL_FUTURE: Int32 = 2, MCL_ONFAULT: Int32 = 4
    static let RLIMIT_MEMLOCK: Int32 = 8, CAP_IPC_LOCK = 14

    static func register(_ t: inout SyscallTable) {
        t.add(SYS.mlock, .emulated, note: "VM_LOCKED on the guest's mappings; RLIMIT_MEMLOCK unless CAP_IPC_LOCK") { c in
            try lock(c, start: c.arg(0), length: c.arg(1), flags: 0)
        }
        t.add(SYS.mlock2, .emulated, note: "MLOCK_ONFAULT too") { c in
            guard c.int(2) & ~MLOCK_ONFAULT == 0 else { throw Errno.inval }
            return try lock(c, start: c.arg(0), length: c.arg(1), flags: c.int(2))
        }
        t.add(SYS.munlock, .emulated, note: "clears VM_LOCKED") { c in try unlock(c, start: c.arg(0), length: c.arg(1)) }
        t.add(SYS.mlockall, .emulated, note: "MCL_CURRENT, MCL_FUTURE, MCL_ONFAULT", mlockall)
        t.add(SYS.munlockall, .emulated, note: "clears VM_LOCKED and MCL_FUTURE") { c in
            let p = c.process
            p.space.futureOptions.subtract([.locked, .lockOnFault])
            p.space.update(0, GuestMemory.userLimit) { $0.options.subtract([.locked, .lockOnFault]) }
            return 0
        }
        t.add(SYS.mincore, .emulated, note: "a page is resident once touched (anonymous memory) or mapped from a file", mincore)
    }

    /// The page-aligned range mlock and munlock act on: the start rounded
    /// down, the length rounded up to cover it; nil when it wraps.
    static func range(_ start: UInt64, _ length: UInt64) -> (UInt64, UInt64)? {
        let s = start & ~4095
        let (l, o) = length.addingReportingOverflow(start & 4095)
        guard !o, let len = AddressSpace.pageUp(l) else { return nil }
        let (e, o2) = s.addingReportingOverflow(len)
        return o2 ? nil : (s, e)
    }

    /// The soft RLIMIT_MEMLOCK in pages, or -1 when CAP_IPC_LOCK lifts it.
    /// Decided from guest state so that replay decides the same: the
    /// thread's emulated capability, the limit the
    /// one the guest set, else Linux's default (8 MiB since 5.16).
    static func lockLimit(_ c: SyscallCall) -> Int64 {
        let p = c.process
        if p.current.credentials.capable(14) { return -1 }   // CAP_IPC_LOCK
        return Int64(clamping: (p.limits[RLIMIT_MEMLOCK]?.soft ?? 8 << 20) / 4096)
    }

    /// Pages of the mappings in [start, end) that are locked already.
    static func lockedPages(_ space: AddressSpace, _ start: UInt64, _ end: UInt64) -> UInt64 {
        space.mappings.filter { $0.options.contains(.locked) && $0.end > start && $0.start < end }
            .reduce(0) { $0 + (min($1.end, end) - max($1.start, start)) / 4096 }
    }

    static func lock(_ c: SyscallCall, start: UInt64, length: UInt64, flags: Int32) throws -> Int64 {
        guard let (s, e) = range(start, length) else { throw Errno.inval }
        let limit = lockLimit(c)
        guard limit != 0 else { throw Errno.perm }   // can_do_mlock
        let p = c.process
        if limit > 0 {
            let all = lockedPages(p.space, 0, GuestMemory.userLimit)
            let wanted = all + (e - s) / 4096 - lockedPages(p.space, s, e)
            guard wanted <= UInt64(limit) else { throw Errno.nomem }
        }
        guard s < e else { return 0 }
        let options: MappingOptions = flags & MLOCK_ONFAULT != 0 ? [.locked, .lockOnFault] : [.locked]
        // apply_vma_lock_flags: up to the first hole, which is ENOMEM.
        var at = s
        var result: Errno?
        for m in p.space.mappings where m.end > at && m.start < e {
            guard m.start <= at else { break }
            at = min(m.end, e)
        }
        if at < e { result = .nomem }
        if at > s {
            p.space.update(s, at) { $0.options.subtract([.locked, .lockOnFault]); $0.options.formUnion(options) }
            if flags & MLOCK_ONFAULT == 0, let error = populate(p, s, at) { result = result ?? error }
        }
        if let result { throw result }
        return 0
    }

    /// Faults the pages in, as __mm_populate does: an inaccessible mapping
    /// (PROT_NONE) or pages past a file's end stop it with ENOMEM.
    static func populate(_ p: Process, _ s: UInt64, _ e: UInt64) -> Errno? {
        for m in p.space.mappings where m.end > s && m.start < e {
            let from = max(s, m.start), to = min(e, m.end)
            if m.protection.isEmpty || m.fileBackedEnd < to { return .nomem }
            var at = from
            while at < to {
                _ = try? p.memory.readValue(at, as: UInt8.self, access: .kernel)
                at += 4096
            }
        }
        return nil
    }

    static func unlock(_ c: SyscallCall, start: UInt64, length: UInt64) throws -> Int64 {
        guard let (s, e) = range(start, length) else { throw Errno.inval }
        guard s < e else { return 0 }
        let p = c.process
        var at = s
        for m in p.space.mappings where m.end > at && m.start < e {
            guard m.start <= at else { break }
            at = min(m.end, e)
        }
        if at > s { p.space.update(s, at) { $0.options.subtract([.locked, .lockOnFault]) } }
        guard at >= e else { throw Errno.nomem }
        return 0
    }

    static func mlockall(_ c: SyscallCall) throws -> Int64 {
        let flags = c.int(0)
        guard flags != 0, flags & ~(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) == 0, flags != MCL_ONFAULT else { throw Errno.inval }
        let limit = lockLimit(c)
        guard limit != 0 else { throw Errno.perm }
        let p = c.process
        let total = p.space.mappings.reduce(UInt64(0)) { $0 + UInt64($1.pages) }
        if flags & MCL_CURRENT != 0 && limit > 0 && total > UInt64(limit) { throw Errno.nomem }
        let options: MappingOptions = flags & MCL_ONFAULT != 0 ? [.locked, .lockOnFault] : [.locked]
        p.space.futureOptions.subtract([.locked, .lockOnFault])
        if flags & MCL_FUTURE != 0 { p.space.futureOptions.formUnion(options) }
        if flags & MCL_CURRENT != 0 {
            p.space.update(0, GuestMemory.userLimit) { $0.options.subtract([.locked, .lockOnFault]); $0.options.formUnion(options) }
            if flags & MCL_ONFAULT == 0 {
                // Errors of the population are ignored (mlockall's __mm_populate ignores them).
                for m in p.space.mappings where !m.protection.isEmpty { _ = populate(p, m.start, m.fileBackedEnd) }
            }
        }
        return 0
    }

    /// mincore: EINVAL for an unaligned start, ENOMEM for a range outside
    /// user space or with a hole (the pages before it are still written),
    /// EFAULT for a vector that cannot take the answer.
    static func mincore(_ c: SyscallCall) throws -> Int64 {
        let start = c.arg(0), length = c.arg(1), vector = c.arg(2)
        guard start & 4095 == 0 else { throw Errno.inval }
        guard start <= GuestMemory.userLimit, length <= GuestMemory.userLimit - start else { throw Errno.nomem }
        let pages = Int((length + 4095) / 4096)
        guard pages > 0 else { return 0 }
        guard vector < GuestMemory.userLimit, UInt64(pages) <= GuestMemory.userLimit - vector else { throw Errno.fault }
        let p = c.process
        let end = start + UInt64(pages) * 4096
        // The mapped pages from `start` up to the first hole.
        var at = start
        for m in p.space.mappings where m.end > at && m.start < end {
            guard m.start <= at else { break }
            at = min(m.end, end)
        }
        let answered = Int((at - start) / 4096)
        if answered == 0 { throw Errno.nomem }
        try c.checkWritable(vector, count: answered)
        let r = try c.host { effects throws(Errno) -> Int64 in
            var v = p.memory.residency(start, pages: answered)
            // File pages are in the page cache once mapped; locked pages were faulted in.
            for m in p.space.mappings where m.end > start && m.start < at && (m.isFileBacked || m.options.contains(.locked)) {
                let low = max(m.start, start), high = min(m.fileBackedEnd, at)
                guard low < high else { continue }
                for i in Int((low - start) / 4096)..<Int((high - start) / 4096) { v[i] = 1 }
            }
            try effects.write(vector, v)
            return 0
        }
        if r < 0 { return r }
        guard at >= end else { throw Errno.nomem }
        return 0
    }
}
