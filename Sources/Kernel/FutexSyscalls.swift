import Glibc

/// futex(2) for a process with one thread: nobody else can be waiting, so
/// a wake wakes no one, and a wait either fails at once (the value changed),
/// times out (really sleeping while recording), or would block forever,
/// which stops the run with a message instead of hanging.
enum FutexSyscalls {
    static func register(_ t: inout SyscallTable) {
        t.add(SYS.futex, futex)
    }

    static let WAIT: Int32 = 0, WAKE: Int32 = 1, REQUEUE: Int32 = 3, CMP_REQUEUE: Int32 = 4
    static let WAKE_OP: Int32 = 5, WAIT_BITSET: Int32 = 9, WAKE_BITSET: Int32 = 10

    static func futex(_ c: SyscallCall) throws -> Int64 {
        let address = c.arg(0)
        let command = c.int(1) & 127
        guard address & 3 == 0 else { throw Errno.inval }
        switch command {
        case WAKE, WAKE_BITSET, REQUEUE:
            if command == WAKE_BITSET, c.int(5) == 0 { throw Errno.inval }
            let _: UInt32 = try c.readValue(address)
            return 0
        case CMP_REQUEUE:
            let value: UInt32 = try c.readValue(address)
            guard value == UInt32(truncatingIfNeeded: c.arg(5)) else { throw Errno.again }
            return 0
        case WAKE_OP:
            try wakeOp(c)
            return 0
        case WAIT, WAIT_BITSET:
            if command == WAIT_BITSET, c.int(5) == 0 { throw Errno.inval }
            let value: UInt32 = try c.readValue(address)
            guard value == UInt32(truncatingIfNeeded: c.arg(2)) else { throw Errno.again }
            guard c.arg(3) != 0 else {
                throw RunStopped("futex wait at 0x\(String(address, radix: 16)) with no timeout in a single-threaded program would block forever (guest rip 0x\(String(c.rip, radix: 16)))")
            }
            let ts = try c.read(c.arg(3), count: 16)
            let sec = Int64(bitPattern: Bytes.u64(ts, at: 0)), nsec = Int64(bitPattern: Bytes.u64(ts, at: 8))
            guard sec >= 0, nsec >= 0, nsec < 1_000_000_000 else { throw Errno.inval }
            // FUTEX_WAIT's timeout is relative; WAIT_BITSET's is absolute on
            // CLOCK_MONOTONIC, or CLOCK_REALTIME with FUTEX_CLOCK_REALTIME.
            let absolute = command == WAIT_BITSET
            let clock: Int32 = c.int(1) & 256 != 0 ? CLOCK_REALTIME : CLOCK_MONOTONIC
            return try c.host { _ throws(Errno) -> Int64 in
                var request = timespec(tv_sec: Int(sec), tv_nsec: Int(nsec))
                var remaining = timespec()
                let r = clock_nanosleep(clock, absolute ? TIMER_ABSTIME : 0, &request, &remaining)
                return r == 0 ? Errno(ETIMEDOUT).result : -Int64(r)
            }
        default:
            c.process.report("futex operation \(command) is not supported; returning ENOSYS", key: 0x4_0000_0000 | UInt64(command), rip: c.rip)
            throw Errno.nosys
        }
    }

    /// FUTEX_WAKE_OP: `*uaddr2 = op(*uaddr2, oparg)`, then wake (no one).
    static func wakeOp(_ c: SyscallCall) throws {
        let target = c.arg(4)
        guard target & 3 == 0 else { throw Errno.inval }
        let encoded = UInt32(truncatingIfNeeded: c.arg(5))
        var op = (encoded >> 28) & 7
        let shift = (encoded >> 28) & 8 != 0
        var oparg = (Int32(bitPattern: (encoded >> 12) & 0xfff) << 20) >> 20   // sign-extend 12 bits
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
        default: op = 8; new = old
        }
        guard op != 8 else { throw Errno.nosys }
        try c.writeValue(target, new)
    }
}
