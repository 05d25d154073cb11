import Glibc

/// The PI futex operations (futex(2), "Priority-inheritance futexes"):
/// the word holds the owner's TID with FUTEX_WAITERS and FUTEX_OWNER_DIED,
/// LOCK_PI takes a free word or parks until UNLOCK_PI hands the lock to
/// the first waiter (writing its TID into the word, as the kernel does),
/// and the REQUEUE_PI pair moves condition waiters onto a PI mutex. All of
/// it is guest memory and parked threads, the same in record and replay.
/// Every guest thread has the same priority on one vCPU, so inheritance
/// changes nothing and waiters are served in the order they came.
///
/// PI waiters park on `.futex` with bitset 0, which no FUTEX_WAKE matches:
/// as on Linux, a plain wake (or WAKE_OP, REQUEUE) that meets one fails
/// with EINVAL instead of reaching it.
enum PriorityInheritanceFutexes {
    static let LOCK_PI: Int32 = 6, UNLOCK_PI: Int32 = 7, TRYLOCK_PI: Int32 = 8
    static let WAIT_REQUEUE_PI: Int32 = 11, CMP_REQUEUE_PI: Int32 = 12, LOCK_PI2: Int32 = 13
    static let WAITERS = RobustFutexes.FUTEX_WAITERS, OWNER_DIED = RobustFutexes.FUTEX_OWNER_DIED
    static let TID_MASK = RobustFutexes.FUTEX_TID_MASK
    static let waiterBitset: UInt32 = 0

    /// Threads parked on the PI word at `address` of `p`'s memory, first
    /// come first: of every process mapping the same shared page unless
    /// the operation is FUTEX_PRIVATE.
    static func waiters(_ p: Process, _ address: UInt64, privately: Bool) -> [(GuestThread, MemoryContext)] {
        let key = privately ? nil : SharedMemory.futexKey(p.mm, address)
        var found: [(GuestThread, MemoryContext)] = []
        var seen: Set<ObjectIdentifier> = []
        let memories = key == nil ? [p.mm] : p.family.processes.filter { $0.zombieStatus == nil }.map(\.mm)
        for mm in memories where seen.insert(ObjectIdentifier(mm)).inserted {
            for t in mm.futexOrder {
                guard let b = t.blocked, b.result == nil, let f = b.futex, f.bitset == waiterBitset else { continue }
                if let key {
                    guard let k = SharedMemory.futexKey(mm, f.address), k == key else { continue }
                } else if f.address != address {
                    continue
                }
                found.append((t, mm))
            }
        }
        return found
    }

    /// Wakes `t` as the lock's new owner.
    static func handOver(_ t: GuestThread, _ mm: MemoryContext) {
        guard var b = t.blocked else { return }
        b.result = 0
        t.blocked = b
        mm.futexOrder.removeAll { $0 === t }
    }

    /// The absolute timeout of LOCK_PI (CLOCK_REALTIME), LOCK_PI2 and
    /// WAIT_REQUEUE_PI (CLOCK_MONOTONIC unless FUTEX_CLOCK_REALTIME).
    static func deadline(_ c: SyscallCall, realtime: Bool) throws -> MonotonicInstant? {
        guard c.arg(3) != 0 else { return nil }
        let (sec, nsec) = try TimerSyscalls.timespecFields(try c.read(c.arg(3), count: 16), at: 0)
        guard sec >= 0, nsec >= 0, nsec < 1_000_000_000 else { throw Errno.inval }
        return FutexSyscalls.absoluteDeadline(Nanoseconds(seconds: sec, nanoseconds: nsec), realtime: realtime)
    }

    /// LOCK_PI, LOCK_PI2 and TRYLOCK_PI.
    static func lock(_ c: SyscallCall, command: Int32) throws -> SyscallOutcome {
        let p = c.process, address = c.arg(0)
        let privately = c.int(1) & FutexSyscalls.PRIVATE_FLAG != 0
        let realtimeFlag = c.int(1) & FutexSyscalls.CLOCK_REALTIME_FLAG != 0
        if realtimeFlag && command != LOCK_PI2 { throw Errno.nosys }
        let me = UInt32(bitPattern: p.current.tid)
        let word: UInt32 = try c.readValue(address)
        if word & TID_MASK == me { throw Errno(EDEADLK) }
        let queued = waiters(p, address, privately: privately)
        if word & TID_MASK == 0 {
            // Free (perhaps with OWNER_DIED, which the new owner sees).
            try c.writeValue(address, (word & OWNER_DIED) | me | (queued.isEmpty ? 0 : WAITERS))
            return .result(0)
        }
        if command == TRYLOCK_PI { throw Errno.again }
        // An owner that is no thread of the recording (it ended without a
        // robust list saying so) cannot hand the lock over.
        guard p.family.find(Int32(bitPattern: word & TID_MASK)) != nil else { throw Errno.srch }
        let deadline = try self.deadline(c, realtime: command == LOCK_PI || realtimeFlag)
        if word & WAITERS == 0 { try c.writeValue(address, word | WAITERS) }
        return .park(.futex(address: address, bitset: waiterBitset, deadline: deadline))
    }

    /// UNLOCK_PI: the first waiter becomes the owner, or the word goes to 0.
    static func unlock(_ c: SyscallCall) throws -> Int64 {
        let p = c.process, address = c.arg(0)
        let word: UInt32 = try c.readValue(address)
        guard word & TID_MASK == UInt32(bitPattern: p.current.tid) else { throw Errno.perm }
        if let (next, mm) = waiters(p, address, privately: c.int(1) & FutexSyscalls.PRIVATE_FLAG != 0).first {
            try c.writeValue(address, WAITERS | UInt32(bitPattern: next.tid))
            handOver(next, mm)
        } else {
            try c.writeValue(address, UInt32(0))
        }
        return 0
    }

    /// WAIT_REQUEUE_PI: a condition wait that ends owning the PI mutex at
    /// `uaddr2` (CMP_REQUEUE_PI takes it for the waiter or queues it there).
    static func waitRequeue(_ c: SyscallCall) throws -> SyscallOutcome {
        let address = c.arg(0)
        guard c.arg(4) & 3 == 0, c.arg(4) != address else { throw Errno.inval }
        let value: UInt32 = try c.readValue(address)
        guard value == UInt32(truncatingIfNeeded: c.arg(2)) else { throw Errno.again }
        let deadline = try self.deadline(c, realtime: c.int(1) & FutexSyscalls.CLOCK_REALTIME_FLAG != 0)
        return .park(.futex(address: address, bitset: waiterBitset, deadline: deadline))
    }

    /// CMP_REQUEUE_PI: the first condition waiter gets the mutex if it is
    /// free (and is woken); the others, up to the count, wait on the mutex.
    static func cmpRequeue(_ c: SyscallCall) throws -> Int64 {
        let p = c.process, address = c.arg(0), mutex = c.arg(4)
        let privately = c.int(1) & FutexSyscalls.PRIVATE_FLAG != 0
        guard mutex & 3 == 0, mutex != address else { throw Errno.inval }
        guard c.int(2) == 1 else { throw Errno.inval }
        let limit = Int(Int32(truncatingIfNeeded: c.arg(3)))
        guard limit >= 0 else { throw Errno.inval }
        let value: UInt32 = try c.readValue(address)
        guard value == UInt32(truncatingIfNeeded: c.arg(5)) else { throw Errno.again }
        var queued = waiters(p, address, privately: privately)
        guard !queued.isEmpty else { return 0 }
        var count = 0
        var word: UInt32 = try c.readValue(mutex)
        if word & TID_MASK == 0 {
            let (top, mm) = queued.removeFirst()
            word = (word & OWNER_DIED) | WAITERS | UInt32(bitPattern: top.tid)
            try c.writeValue(mutex, word)
            handOver(top, mm)
            count = 1
        }
        var moved = 0
        for (t, _) in queued where moved < limit {
            guard var b = t.blocked, case .futex(_, _, let deadline) = b.condition else { continue }
            b.condition = .futex(address: mutex, bitset: waiterBitset, deadline: deadline)
            t.blocked = b
            moved += 1
        }
        if moved > 0 && word & WAITERS == 0 { try c.writeValue(mutex, word | WAITERS) }
        return Int64(count + moved)
    }
}
