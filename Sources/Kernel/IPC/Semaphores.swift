import Glibc

/// A System V semaphore set (ipc/sem.c): values, the last pid per
/// semaphore, and the threads parked in semop on it (for GETNCNT/GETZCNT).
final class SemaphoreSet: IPCObject {
    var permission = IPCPermission(key: 0, uid: 0, gid: 0, cuid: 0, cgid: 0, mode: 0, seq: 0)
    var values: [Int]
    var pids: [Int32]
    var operationTime: Int64 = 0, changeTime: Int64
    /// Set by IPC_RMID: a thread parked on it gets EIDRM.
    var removed = false
    /// Parked semops by thread id: the semaphore of the operation that
    /// would block and whether it waits for zero (Linux counts that one).
    var waiters: [Int32: (number: Int, forZero: Bool)] = [:]

    init(count: Int, now: Int64) {
        values = Array(repeating: 0, count: count)
        pids = Array(repeating: 0, count: count)
        changeTime = now
    }

    /// Threads still parked (a thread that ended or returned leaves no count).
    func waiting(_ family: ProcessFamily, number: Int, forZero: Bool) -> Int {
        waiters.filter { tid, w in
            w.number == number && w.forZero == forZero && family.find(tid)?.1.blocked != nil
        }.count
    }
}

/// One struct sembuf: sem_num (u16), sem_op (s16), sem_flg (s16).
struct SemaphoreOperation {
    var number: Int, op: Int, flags: Int32
}

/// semget, semop, semtimedop and semctl, emulated in `IPCNamespace`.
enum Semaphores {
    static let SEM_UNDO: Int32 = 0x1000
    static let GETPID: Int32 = 11, GETVAL: Int32 = 12, GETALL: Int32 = 13, GETNCNT: Int32 = 14, GETZCNT: Int32 = 15
    static let SETVAL: Int32 = 16, SETALL: Int32 = 17, SEM_STAT: Int32 = 18, SEM_INFO: Int32 = 19, SEM_STAT_ANY: Int32 = 20
    /// Linux's defaults: SEMMSL, SEMMNI, SEMOPM, SEMVMX (= SEMAEM).
    static let perSet = 32000, maxSets = 32000, maxOperations = 500, maxValue = 32767

    static func register(_ t: inout SyscallTable) {
        t.add(SYS.semget, .emulated, note: "emulated inside the recording (processes outside it do not see the sets)", semget)
        t.addOutcome(SYS.semop, .emulated, note: "blocking parks the thread; SEM_UNDO applied when the process ends") { c in
            try semtimedop(c, timeout: 0)
        }
        t.addOutcome(SYS.semtimedop, .emulated, note: "blocking parks the thread; SEM_UNDO applied when the process ends") { c in
            try semtimedop(c, timeout: c.arg(3))
        }
        t.add(SYS.semctl, .emulated, note: "GETVAL, SETVAL, GETALL, SETALL, GETPID, GETNCNT, GETZCNT, IPC_STAT/SET/RMID/INFO, SEM_INFO, SEM_STAT(_ANY)", semctl)
    }

    static func semget(_ c: SyscallCall) throws -> Int64 {
        let p = c.process, ns = p.family.ipc
        let key = c.int(0), count = c.int(1), flags = c.int(2)
        guard count >= 0, count <= perSet else { throw Errno.inval }
        let id = try IPCGet.get(&ns.semaphoreSets, key: key, flags: flags, who: ns.credentials(c), limit: maxSets,
                                moreChecks: { (set: SemaphoreSet) throws(Errno) in if set.values.count < Int(count) { throw .inval } },
                                make: { () throws(Errno) -> SemaphoreSet in
            guard count > 0 else { throw .inval }
            let now = IPCNamespace.now(c)
            return SemaphoreSet(count: Int(count), now: now)
        })
        return Int64(id)
    }

    enum Attempt { case done, wouldBlock(SemaphoreOperation), failed(Errno) }

    /// perform_atomic_semop: all the operations in order on a copy, and
    /// only if none would block or overflow are they applied.
    static func attempt(_ set: SemaphoreSet, _ ops: [SemaphoreOperation], undo: [Int: Int], pid: Int32,
                        apply: Bool) -> (Attempt, [Int: Int]) {
        var values = set.values
        var adjustments = undo
        for op in ops {
            let value = values[op.number]
            if op.op == 0 && value != 0 || value + op.op < 0 {
                return (op.flags & IPCPermission.IPC_NOWAIT != 0 ? .failed(.again) : .wouldBlock(op), undo)
            }
            let result = value + op.op
            if result > maxValue { return (.failed(.range), undo) }
            if op.flags & SEM_UNDO != 0 {
                let adjusted = (adjustments[op.number] ?? 0) - op.op
                if adjusted < -maxValue - 1 || adjusted > maxValue { return (.failed(.range), undo) }
                adjustments[op.number] = adjusted
            }
            values[op.number] = result
        }
        if apply {
            set.values = values
            for op in ops { set.pids[op.number] = pid }
        }
        return (.done, adjustments)
    }

    static func semtimedop(_ c: SyscallCall, timeout: UInt64) throws -> SyscallOutcome {
        let p = c.process, ns = p.family.ipc
        let tid = p.current.tid
        // What this thread parked on before, if it did: that attempt is over.
        let previous = ns.semaphoreSets.byIndex.values.first { $0.waiters[tid] != nil }
            ?? ns.removedSets.first { $0.waiters[tid] != nil }
        previous?.waiters[tid] = nil
        ns.removedSets.removeAll { $0.waiters.isEmpty }
        if let previous, previous.removed { throw Errno(EIDRM) }
        if c.interrupted { return .result(Errno.intr.result) }
        let id = c.int(0), count = c.arg(2)
        guard count >= 1, id >= 0 else { throw Errno.inval }
        guard count <= UInt64(maxOperations) else { throw Errno(E2BIG) }
        let raw = try c.read(c.arg(1), count: Int(count) * 6)
        var ops: [SemaphoreOperation] = []
        for i in 0..<Int(count) {
            let number = UInt16(raw[i * 6]) | UInt16(raw[i * 6 + 1]) << 8
            let op = Int16(bitPattern: UInt16(raw[i * 6 + 2]) | UInt16(raw[i * 6 + 3]) << 8)
            let flags = Int16(bitPattern: UInt16(raw[i * 6 + 4]) | UInt16(raw[i * 6 + 5]) << 8)
            ops.append(SemaphoreOperation(number: Int(number), op: Int(op), flags: Int32(flags)))
        }
        var span: Nanoseconds?
        if timeout != 0 {
            let (sec, nsec) = try TimerSyscalls.timespecFields(try c.read(timeout, count: 16), at: 0)
            guard sec >= 0, nsec >= 0, nsec < 1_000_000_000 else { throw Errno.inval }
            span = Nanoseconds(seconds: sec, nanoseconds: nsec)
        }
        guard let set = ns.semaphoreSets.object(id) else { throw Errno.inval }
        guard let highest = ops.map({ (o: SemaphoreOperation) in o.number }).max(), highest < set.values.count else { throw Errno(EFBIG) }
        let alters = ops.contains { $0.op != 0 }
        guard set.permission.allows(alters ? 0o222 : 0o444, ns.credentials(c)) else { throw Errno.acces }
        let undo = ns.undo[p.pid]?[id] ?? [:]
        let (outcome, _) = attempt(set, ops, undo: undo, pid: p.pid, apply: false)
        switch outcome {
        case .failed(let e):
            throw e
        case .done:
            let now = IPCNamespace.now(c)
            let (_, adjusted) = attempt(set, ops, undo: undo, pid: p.pid, apply: true)
            if ops.contains(where: { $0.flags & SEM_UNDO != 0 }) { ns.undo[p.pid, default: [:]][id] = adjusted }
            set.operationTime = now
            return .result(0)
        case .wouldBlock(let blocking):
            var deadline: MonotonicInstant?
            if let span {
                // A timeout that has run out fails with EAGAIN: the recording's
                // clock decides, and replay follows its decision to park.
                let wanted = c.deadline(after: span)
                guard c.world.shouldBlock({ !wanted.hasPassed }) else { throw Errno.again }
                deadline = wanted
            }
            set.waiters[tid] = (blocking.number, blocking.op == 0)
            let ready: () -> Bool = { [weak set] in
                guard let set else { return true }
                if set.removed { return true }
                if case .wouldBlock = attempt(set, ops, undo: undo, pid: 0, apply: false).0 { return false }
                return true
            }
            return .park(.guestUntil(ready: ready, deadline: deadline))
        }
    }

    /// exit_sem: the process's SEM_UNDO adjustments go back into the
    /// semaphores, clamped to [0, SEMVMX].
    static func processEnded(_ p: Process) {
        guard let ns = p.family.ipcState, let lists = ns.undo.removeValue(forKey: p.pid) else { return }
        for (id, adjustments) in lists {
            guard let set = ns.semaphoreSets.object(id) else { continue }
            for (number, adjustment) in adjustments where adjustment != 0 && number < set.values.count {
                set.values[number] = min(max(set.values[number] + adjustment, 0), maxValue)
                set.pids[number] = p.pid
            }
        }
    }

    /// SETVAL and SETALL forget the adjustments every process holds for them.
    static func clearUndo(_ ns: IPCNamespace, id: Int32, number: Int?) {
        for pid in ns.undo.keys {
            if let number { ns.undo[pid]?[id]?[number] = nil } else { ns.undo[pid]?[id] = nil }
        }
    }

    static func semctl(_ c: SyscallCall) throws -> Int64 {
        let p = c.process, ns = p.family.ipc
        let id = c.int(0), number = c.int(1), command = c.int(2), argument = c.arg(3)
        guard id >= 0 else { throw Errno.inval }
        let who = ns.credentials(c)
        switch command {
        case IPCPermission.IPC_INFO, SEM_INFO:
            let sets = Array(ns.semaphoreSets.byIndex.values)
            // struct seminfo: semmap, semmni, semmns, semmnu, semmsl, semopm, semume, semusz, semvmx, semaem.
            let total = perSet * maxSets
            var info = [total, maxSets, total, total, perSet, maxOperations, maxOperations, 20, maxValue, maxValue]
            if command == SEM_INFO { info[7] = sets.count; info[9] = sets.reduce(0) { $0 + $1.values.count } }
            try c.write(argument, info.flatMap { Bytes.i32(Int32(truncatingIfNeeded: $0)) })
            return Int64(ns.semaphoreSets.highestIndex)
        case IPCPermission.IPC_STAT, SEM_STAT, SEM_STAT_ANY:
            guard let set = command == IPCPermission.IPC_STAT ? ns.semaphoreSets.object(id) : ns.semaphoreSets.object(index: id) else { throw Errno.inval }
            if command != SEM_STAT_ANY, !set.permission.allows(0o444, who) { throw Errno.acces }
            var b = set.permission.bytes + IPCBytes.i64(set.operationTime) + Bytes.u64(0) + IPCBytes.i64(set.changeTime) + Bytes.u64(0)
            b += Bytes.u64(UInt64(set.values.count)) + Bytes.u64(0) + Bytes.u64(0)
            return try IPCNamespace.stat(c, argument, b, returning: command == IPCPermission.IPC_STAT ? 0 : Int64(ns.semaphoreSets.id(of: set) ?? 0))
        case IPCPermission.IPC_SET:
            let given = try c.read(argument, count: IPCPermission.size)
            guard let set = ns.semaphoreSets.object(id) else { throw Errno.inval }
            guard set.permission.ownedBy(who) else { throw Errno.perm }
            set.permission.set(from: given)
            set.changeTime = IPCNamespace.now(c)
            return 0
        case IPCPermission.IPC_RMID:
            guard let set = ns.semaphoreSets.object(id) else { throw Errno.inval }
            guard set.permission.ownedBy(who) else { throw Errno.perm }
            set.removed = true
            ns.semaphoreSets.remove(set)
            if !set.waiters.isEmpty { ns.removedSets.append(set) }
            clearUndo(ns, id: id, number: nil)
            return 0
        case GETVAL, GETPID, GETNCNT, GETZCNT, SETVAL, GETALL, SETALL:
            guard let set = ns.semaphoreSets.object(id) else { throw Errno.inval }
            let writes = command == SETVAL || command == SETALL
            if command == GETALL || command == SETALL {
                guard set.permission.allows(writes ? 0o222 : 0o444, who) else { throw Errno.acces }
                if command == GETALL {
                    try c.write(argument, set.values.flatMap { IPCBytes.u16(UInt16(truncatingIfNeeded: $0)) })
                    return 0
                }
                let raw = try c.read(argument, count: set.values.count * 2)
                let values = (0..<set.values.count).map { Int(UInt16(raw[$0 * 2]) | UInt16(raw[$0 * 2 + 1]) << 8) }
                guard values.allSatisfy({ $0 <= maxValue }) else { throw Errno.range }
                let now = IPCNamespace.now(c)
                set.values = values
                set.pids = Array(repeating: p.pid, count: values.count)
                set.changeTime = now
                clearUndo(ns, id: id, number: nil)
                return 0
            }
            guard number >= 0, Int(number) < set.values.count else { throw Errno.inval }
            guard set.permission.allows(writes ? 0o222 : 0o444, who) else { throw Errno.acces }
            let n = Int(number)
            switch command {
            case GETVAL: return Int64(set.values[n])
            case GETPID: return Int64(set.pids[n])
            case GETNCNT: return Int64(set.waiting(p.family, number: n, forZero: false))
            case GETZCNT: return Int64(set.waiting(p.family, number: n, forZero: true))
            default:
                let value = Int32(truncatingIfNeeded: argument)
                guard value >= 0, value <= Int32(maxValue) else { throw Errno.range }
                let now = IPCNamespace.now(c)
                set.values[n] = Int(value)
                set.pids[n] = p.pid
                set.changeTime = now
                clearUndo(ns, id: id, number: n)
                return 0
            }
        default:
            throw Errno.inval
        }
    }
}
