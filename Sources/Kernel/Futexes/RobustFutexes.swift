/// A thread that dies holding robust mutexes (set_robust_list) leaves
/// each marked FUTEX_OWNER_DIED and wakes one waiter, as Linux's
/// exit_robust_list does: the next pthread_mutex_lock returns EOWNERDEAD
/// instead of waiting forever. Guest memory only, the same in record and replay.
enum RobustFutexes {
    static let FUTEX_WAITERS: UInt32 = 0x8000_0000, FUTEX_OWNER_DIED: UInt32 = 0x4000_0000
    static let FUTEX_TID_MASK: UInt32 = 0x3fff_ffff
    /// ROBUST_LIST_LIMIT: a list longer than this (or circular) is not walked further.
    static let limit = 2048

    /// Walks `thread`'s robust list in `process`'s memory.
    static func release(_ thread: GuestThread, of process: Process) {
        let head = thread.robustList.head
        guard head != 0, thread.robustList.length == 24 else { return }
        let memory = process.memory
        guard let first: UInt64 = try? memory.readValue(head),
              let offset: UInt64 = try? memory.readValue(head &+ 8),
              let pending: UInt64 = try? memory.readValue(head &+ 16) else { return }
        var entry = first
        var walked = 0
        while entry != head && walked < limit {
            // The low bit marks a PI futex; the entry is the rest.
            let at = entry & ~1
            guard let next: UInt64 = try? memory.readValue(at) else { break }
            if at != pending & ~1 { died(at &+ offset, tid: thread.tid, process: process, pi: entry & 1 != 0) }
            entry = next
            walked += 1
        }
        if pending != 0 { died((pending & ~1) &+ offset, tid: thread.tid, process: process, pi: pending & 1 != 0) }
        thread.robustList = (0, 0)
    }

    /// handle_futex_death: a word this thread owns gets OWNER_DIED, and a
    /// waiter is woken. A PI futex's first waiter is handed the lock instead
    /// (exit_pi_state_list, then fixup_pi_state_owner: its TID with
    /// OWNER_DIED and FUTEX_WAITERS), so its LOCK_PI returns owning it.
    static func died(_ address: UInt64, tid: Int32, process: Process, pi: Bool = false) {
        guard address & 3 == 0, let word: UInt32 = try? process.memory.readValue(address),
              word & FUTEX_TID_MASK == UInt32(bitPattern: tid) else { return }
        if pi, let (next, mm) = PriorityInheritanceFutexes.waiters(process, address, privately: false).first(where: { $0.0.tid != tid }) {
            guard (try? process.memory.writeValue(address, FUTEX_OWNER_DIED | FUTEX_WAITERS | UInt32(bitPattern: next.tid))) != nil else { return }
            PriorityInheritanceFutexes.handOver(next, mm)
            return
        }
        guard (try? process.memory.writeValue(address, (word & FUTEX_WAITERS) | FUTEX_OWNER_DIED)) != nil else { return }
        guard word & FUTEX_WAITERS != 0, !pi else { return }
        if let key = SharedMemory.futexKey(process.mm, address) {
            _ = SharedMemory.wake(process.family, key, count: 1, bitset: 0xffff_ffff)
        } else {
            _ = process.wake(address, count: 1)
        }
    }
}
