import Glibc

/// signalfd and signalfd4: a descriptor whose read takes pending signals of
/// its mask off the pending set and returns each as a 128-byte struct
/// signalfd_siginfo. The signals are detrec's own (guest state), so reads
/// are computed alike in record and replay; only a wait goes to the host
/// (`SignalWait.wait`). While recording, the descriptor's host side is an
/// eventfd kept readable exactly while a signal of the mask is pending, so
/// poll and fcntl (O_NONBLOCK) work on it as on any descriptor.
enum SignalFD {
    static let SFD_CLOEXEC: Int32 = 0o2000000, SFD_NONBLOCK: Int32 = 0o4000

    static func register(_ t: inout SyscallTable) {
        t.add(SYS.signalfd) { c in try create(c, flags: 0) }
        t.add(SYS.signalfd4) { c in try create(c, flags: c.int(3)) }
    }

    static func create(_ c: SyscallCall, flags: Int32) throws -> Int64 {
        guard flags & ~(SFD_CLOEXEC | SFD_NONBLOCK) == 0 else { throw Errno.inval }
        guard c.arg(2) == 8 else { throw Errno.inval }
        let mask: UInt64 = try c.readValue(c.arg(1)) & ~SignalDelivery.unblockable
        let fd = c.int(0)
        if fd != -1 {
            // An existing signalfd gets the new mask.
            let file = try c.file(0)
            guard file.signalMask != nil else { throw Errno.inval }
            file.signalMask = mask
            signalsChanged(c.process)
            return Int64(fd)
        }
        let r = try c.newDescriptor(name: "anon_inode:[signalfd]", closeOnExec: flags & SFD_CLOEXEC != 0) { _ in
            hostSyscall(SYS.eventfd2, 0, Int(O_CLOEXEC | (flags & SFD_NONBLOCK != 0 ? O_NONBLOCK : 0)))
        }
        if r >= 0, let file = c.process.files[Int32(r)] {
            file.signalMask = mask
            signalsChanged(c.process)
        }
        return r
    }

    /// read(2) on a signalfd: as many signals as fit, at least one (waiting
    /// for it unless the descriptor is non-blocking).
    static func read(_ c: SyscallCall, _ file: OpenFile, mask: UInt64) throws -> SyscallOutcome {
        SignalWait.clear(c)
        let count = try c.size(2) / 128
        guard count > 0 else { throw Errno.inval }
        let buffer = c.arg(1)
        try c.checkWritable(buffer, count: 128)
        let p = c.process
        if p.pendingSignals() & mask == 0 {
            let other = SignalWait.deliverable(p, mask: p.signals.mask)
            if p.pendingSignals() & other != 0 { return .result(Errno.intr.result) }
            let outcome = try SignalWait.wait(c, wake: mask | other, restartOn: mask, deadline: nil, file: file)
            guard case .result = outcome, p.pendingSignals() & mask != 0 else { return outcome }
        }
        var taken = 0
        while taken < count, (try? c.checkWritable(buffer + UInt64(taken * 128), count: 128)) != nil,
              let (_, info) = SignalDelivery.dequeue(p, from: mask) {
            try c.write(buffer + UInt64(taken * 128), layout(info))
            taken += 1
        }
        return .result(Int64(taken * 128))
    }

    /// struct signalfd_siginfo from a siginfo, field by field as Linux's
    /// signalfd_copyinfo picks them by the siginfo's layout.
    static func layout(_ info: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 128)
        func put(_ at: Int, _ bytes: [UInt8]) { for (k, b) in bytes.enumerated() { out[at + k] = b } }
        func i32(_ at: Int) -> [UInt8] { Array(info[at..<at + 4]) }
        func u64(_ at: Int) -> [UInt8] { Array(info[at..<at + 8]) }
        let signal = Int32(bitPattern: Bytes.u32(info, at: 0))
        let code = Int32(bitPattern: Bytes.u32(info, at: 8))
        put(0, i32(0)); put(4, i32(4)); put(8, i32(8))
        let sigval = Int64(bitPattern: Bytes.u64(info, at: 24))
        if code > 0 && code < Signals.SI_KERNEL && [4, 5, 7, 8, 11].contains(signal) {
            put(72, u64(16))                                    // ssi_addr
        } else if code > 0 && code < Signals.SI_KERNEL && signal == 17 {
            put(12, i32(16)); put(16, i32(20)); put(40, i32(24)) // pid, uid, status
            put(56, u64(32)); put(64, u64(40))                  // utime, stime
        } else if code == PosixTimer.SI_TIMER {
            put(24, i32(16)); put(32, i32(20))                  // tid (timer id), overrun
            put(44, i32(24)); put(48, Bytes.u64(UInt64(bitPattern: sigval)))
        } else if code < 0 {
            put(12, i32(16)); put(16, i32(20))                  // pid, uid
            put(44, i32(24)); put(48, Bytes.u64(UInt64(bitPattern: sigval)))
        } else {
            put(12, i32(16)); put(16, i32(20))                  // pid, uid
        }
        return out
    }

    /// Keeps each signalfd's host eventfd readable exactly while a signal
    /// of its mask is pending (recording; replay has no host descriptors).
    static func signalsChanged(_ p: Process) {
        for entry in p.files.entries.values {
            let file = entry.file
            guard let mask = file.signalMask, let fd = file.hostFD else { continue }
            let ready = p.pendingSignals() & mask != 0
            guard ready != file.signalReady else { continue }
            var value: UInt64 = 1
            if ready {
                _ = Glibc.write(fd, &value, 8)
            } else {
                // Drain it; the descriptor may be blocking, so only when readable.
                if GuestThread.ready(fd, Int16(POLLIN), timeout: 0) { _ = Glibc.read(fd, &value, 8) }
            }
            file.signalReady = ready
        }
    }
}
