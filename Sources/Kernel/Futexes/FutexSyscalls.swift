import Glibc

/// futex(2) between guest threads. Waiters park in the emulated kernel
/// (`WaitCondition.futex`); wakes, requeues and WAKE_OP act on the parked threads.
/// All of it is computed from guest state, so replay does the same; only
/// which thread runs next, and when a timed wait times out, come from the
/// scheduler while recording and from the trace on replay.
enum FutexSyscalls {
    static func register(_ t: inout SyscallTable) {
        t.addOutcome(SYS.futex, .emulated, note: "WAIT, WAKE, REQUEUE, CMP_REQUEUE, WAKE_OP, the BITSET forms and the PI operations", futex)
    }

    static let WAIT: Int32 = 0, WAKE: Int32 = 1, REQUEUE: Int32 = 3, CMP_REQUEUE: Int32 = 4
    static let WAKE_OP: Int32 = 5, WAIT_BITSET: Int32 = 9, WAKE_BITSET: Int32 = 10
    static let CLOCK_REALTIME_FLAG: Int32 = 256, PRIVATE_FLAG: Int32 = 128

    static func count(_ v: UInt64) -> Int { Int(Int32(truncatingIfNeeded: v)) < 0 ? Int(Int32.max) : Int(Int32(truncatingIfNeeded: v)) }

    static func futex(_ c: SyscallCall) throws -> SyscallOutcome {
        let address = c.arg(0)
        let command = c.int(1) & 127
        guard address & 3 == 0 else { throw Errno.inval }
        // A shared futex's key is the page behind the address (get_futex_key
        // looks it up): unmapped is EFAULT even for a wake. A private one
        // is just the address.
        if c.int(1) & 128 == 0, (try? c.memory.check(address, count: 4, write: false)) == nil { throw Errno.fault }
        let p = c.process
        switch command {
        case WAKE, WAKE_BITSET:
            let bitset = command == WAKE_BITSET ? UInt32(truncatingIfNeeded: c.arg(5)) : 0xffff_ffff
            guard bitset != 0 else { throw Errno.inval }
            // A word in shared memory wakes waiters of other processes too.
            if c.int(1) & PRIVATE_FLAG == 0, let key = SharedMemory.futexKey(p.mm, address) {
                return .result(Int64(SharedMemory.wake(p.family, key, count: count(c.arg(2)), bitset: bitset)))
            }
            let woken = p.wake(address, count: count(c.arg(2)), bitset: bitset)
            if woken > 0 { p.current.syscallsInSlice = max(p.current.syscallsInSlice, Scheduler.slice) }
            return .result(Int64(woken))
        case REQUEUE, CMP_REQUEUE:
            // futex_requeue refuses negative counts before anything else
            // (FUTEX_WAKE takes a negative one as "all").
            guard Int32(truncatingIfNeeded: c.arg(2)) >= 0, Int32(truncatingIfNeeded: c.arg(3)) >= 0 else { throw Errno.inval }
            if command == CMP_REQUEUE {
                let value: UInt32 = try c.readValue(address)
                guard value == UInt32(truncatingIfNeeded: c.arg(5)) else { throw Errno.again }
            }
            return .result(plainRequeue(p.mm, from: address, to: c.arg(4), wake: count(c.arg(2)), requeue: count(c.arg(3))))
        case WAKE_OP:
            let fire = try wakeOp(c)
            // A PI waiter on either word makes it EINVAL (futex_wake_op).
            let woken = p.wake(address, count: count(c.arg(2)))
            guard woken >= 0, fire else { return .result(Int64(woken)) }
            let second = p.wake(c.arg(4), count: count(c.arg(3)))
            return .result(second < 0 ? Int64(second) : Int64(woken + second))
        case WAIT, WAIT_BITSET:
            let bitset = command == WAIT_BITSET ? UInt32(truncatingIfNeeded: c.arg(5)) : 0xffff_ffff
            guard bitset != 0 else { throw Errno.inval }
            let value: UInt32 = try c.readValue(address)
            guard value == UInt32(truncatingIfNeeded: c.arg(2)) else { throw Errno.again }
            var deadline: MonotonicInstant?
            if c.arg(3) != 0 {
                let (sec, nsec) = try TimerSyscalls.timespecFields(try c.read(c.arg(3), count: 16), at: 0)
                let span = Nanoseconds(seconds: sec, nanoseconds: nsec)
                // WAIT's timeout is relative; WAIT_BITSET's is absolute on
                // CLOCK_MONOTONIC (or CLOCK_REALTIME with the flag). Only
                // the recording's scheduler reads it.
                if command == WAIT {
                    deadline = MonotonicInstant.now() + span
                } else {
                    deadline = absoluteDeadline(span, realtime: c.int(1) & CLOCK_REALTIME_FLAG != 0)
                }
            }
            return .park(.futex(address: address, bitset: bitset, deadline: deadline))
        case PriorityInheritanceFutexes.LOCK_PI, PriorityInheritanceFutexes.LOCK_PI2, PriorityInheritanceFutexes.TRYLOCK_PI:
            return try PriorityInheritanceFutexes.lock(c, command: command)
        case PriorityInheritanceFutexes.UNLOCK_PI:
            return .result(try PriorityInheritanceFutexes.unlock(c))
        case PriorityInheritanceFutexes.WAIT_REQUEUE_PI:
            return try PriorityInheritanceFutexes.waitRequeue(c)
        case PriorityInheritanceFutexes.CMP_REQUEUE_PI:
            return .result(try PriorityInheritanceFutexes.cmpRequeue(c))
        default:
            p.report("futex operation \(command) is not supported; returning ENOSYS", key: 0x4_0000_0000 | UInt64(command), rip: c.rip)
            throw Errno.nosys
        }
    }

    /// An absolute futex timeout as a host monotonic instant: on
    /// CLOCK_MONOTONIC, or CLOCK_REALTIME. Only the recording's scheduler reads it.
    static func absoluteDeadline(_ span: Nanoseconds, realtime: Bool) -> MonotonicInstant {
        guard realtime else { return MonotonicInstant(absolute: span) }
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let realNow = Nanoseconds(seconds: Int64(now.tv_sec), nanoseconds: Int64(now.tv_nsec))
        return MonotonicInstant.now() + (span - realNow)
    }

    /// FUTEX_WAKE_OP's operation on the second word: `*uaddr2 = op(old, oparg)`;
    /// returns whether `cmp(old, cmparg)` holds.
    /// REQUEUE and CMP_REQUEUE, as futex_requeue's loop: the waiters in
    /// the order they came wake (the first `nrWake`) or move to `to` (up
    /// to `nrRequeue` more). A PI waiter met on the way (a WAIT_REQUEUE_PI
    /// or LOCK_PI one, bitset 0) makes it EINVAL, and those before it stay
    /// woken or moved. The result counts both, woken and moved (its
    /// task_count), whatever the man page says of FUTEX_REQUEUE.
    static func plainRequeue(_ mm: MemoryContext, from: UInt64, to: UInt64, wake nrWake: Int, requeue nrRequeue: Int) -> Int64 {
        var taskCount = 0
        var result: Int64?
        for t in mm.futexOrder {
            if taskCount - nrWake >= nrRequeue { break }
            guard var b = t.blocked, b.result == nil, case .futex(from, let bitset, let deadline) = b.condition else { continue }
            if bitset == PriorityInheritanceFutexes.waiterBitset {
                result = Int64(-EINVAL)
                break
            }
            taskCount += 1
            if taskCount <= nrWake {
                b.result = 0
            } else {
                b.condition = .futex(address: to, bitset: bitset, deadline: deadline)
            }
            t.blocked = b
        }
        mm.futexOrder.removeAll { $0.blocked?.result != nil || $0.blocked == nil }
        return result ?? Int64(taskCount)
    }

    static func wakeOp(_ c: SyscallCall) throws -> Bool {
        let target = c.arg(4)
        guard target & 3 == 0 else { throw Errno.inval }
        let encoded = UInt32(truncatingIfNeeded: c.arg(5))
        let op = (encoded >> 28) & 7
        let shift = (encoded >> 28) & 8 != 0
        let cmp = (encoded >> 24) & 15
        var oparg = (Int32(bitPattern: (encoded >> 12) & 0xfff) << 20) >> 20   // sign-extend 12 bits
        let cmparg = (Int32(bitPattern: encoded & 0xfff) << 20) >> 20
        if shift { oparg = Int32(bitPattern: UInt32(1) << UInt32(oparg & 31)) }
        let old: UInt32 = try c.readValue(target)
        let arg = UInt32(bitPattern: oparg)
        let new: UInt32
        switch op {
        case 0: new = arg             // SET
        case 1: new = old &+ arg      // ADD
        case 2: new = old | arg       // OR
        case 3: new = old & ~arg      // ANDN
        case 4: new = old ^ arg       // XOR
        default: throw Errno.nosys
        }
        try c.writeValue(target, new)
        let o = Int32(bitPattern: old)
        switch cmp {
        case 0: return o == cmparg
        case 1: return o != cmparg
        case 2: return o < cmparg
        case 3: return o <= cmparg
        case 4: return o > cmparg
        case 5: return o >= cmparg
        default: throw Errno.nosys
        }
    }
}
