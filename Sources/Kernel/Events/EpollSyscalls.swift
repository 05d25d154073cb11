import Glibc

/// epoll_create, epoll_create1, epoll_ctl, epoll_wait, epoll_pwait and
/// epoll_pwait2.
///
/// An epoll instance is a host epoll descriptor while recording: epoll_ctl
/// registers the host descriptor behind the guest's with the guest's own
/// event mask and data, so the host reports exactly what Linux would and
/// hands back the guest's data; epoll_wait's result and the events it
/// wrote are logged and replayed (replay has no host descriptor). The host
/// epoll refers to open file descriptions as Linux's does: the host
/// descriptor of a guest file stays open while any guest descriptor (in
/// any process, after fork) refers to it, and closing the last one removes
/// it from every interest set. New descriptor numbers come from the guest's
/// table alike in both modes.
///
/// detrec also keeps what each instance watches (`EpollInterest`), updated
/// from epoll_ctl's result in both modes: while recording, a timer whose
/// signal a watched signalfd reads ends a host wait so that the signal can
/// become pending (signals are guest state; see `SignalFD`).
///
/// A wait parks its thread while others can run (the scheduler polls the
/// host epoll descriptor), and otherwise waits on the host until an event,
/// its timeout, a timer or a signal, as Linux's ep_poll decides: ready
/// events first, then the timeout, then a signal (EINTR, never restarted).
///
/// One difference from Linux: the host knows a file by detrec's single
/// host descriptor, so the same file added through two guest descriptors
/// (dup) is EEXIST the second time, where Linux keeps two entries.
enum EpollSyscalls {
    static let EPOLL_CLOEXEC: Int32 = 0o2000000
    static let EPOLL_CTL_ADD: Int32 = 1, EPOLL_CTL_DEL: Int32 = 2, EPOLL_CTL_MOD: Int32 = 3
    static let EPOLLWAKEUP: UInt32 = 1 << 29
    /// struct epoll_event is packed on x86-64: u32 events, u64 data.
    static let eventSize = 12
    /// Linux's EP_MAX_EVENTS.
    static let maxEvents = Int32.max / 12
    /// The end of the user half (access_ok).
    static let userEnd: UInt64 = 0x7fff_ffff_f000

    static func register(_ t: inout SyscallTable) {
        t.add(SYS.epoll_create) { c in
            guard c.int(0) > 0 else { throw Errno.inval }
            return try create(c, closeOnExec: false)
        }
        t.add(SYS.epoll_create1) { c in
            guard c.int(0) & ~EPOLL_CLOEXEC == 0 else { throw Errno.inval }
            return try create(c, closeOnExec: c.int(0) & EPOLL_CLOEXEC != 0)
        }
        t.add(SYS.epoll_ctl, control)
        for n in [SYS.epoll_ctl_old, SYS.epoll_wait_old] { t.refuse(n, "not implemented by Linux on x86-64 either") }
        t.addOutcome(SYS.epoll_wait, .host, note: "a host epoll instance; waits park") { c in
            try wait(c, timeout: milliseconds(c.int(3)))
        }
        t.addOutcome(SYS.epoll_pwait, .host, note: "with the signal mask in force during the wait") { c in
            try DescriptorWait.setMask(c, at: c.arg(4), size: c.arg(5))
            return try DescriptorWait.withMask(c) { try wait(c, timeout: milliseconds(c.int(3))) }
        }
        t.addOutcome(SYS.epoll_pwait2, .host, note: "timespec timeout, signal mask") { c in
            let timeout = try DescriptorWait.timespec(c, at: c.arg(3))
            try DescriptorWait.setMask(c, at: c.arg(4), size: c.arg(5))
            return try DescriptorWait.withMask(c) { try wait(c, timeout: timeout) }
        }
    }

    /// An int timeout in milliseconds; negative is none.
    static func milliseconds(_ ms: Int32) -> Nanoseconds? { ms < 0 ? nil : .milliseconds(Int64(ms)) }

    static func create(_ c: SyscallCall, closeOnExec: Bool) throws -> Int64 {
        let r = try c.newDescriptor(name: "anon_inode:[eventpoll]", closeOnExec: closeOnExec) { _ in
            hostSyscall(SYS.epoll_create1, Int(EPOLL_CLOEXEC))
        }
        if r >= 0 { c.process.files[Int32(r)]?.epoll = EpollInterest() }
        return r
    }

    static func control(_ c: SyscallCall) throws -> Int64 {
        let op = c.int(1)
        // Every operation but DEL reads the event (EFAULT first, as Linux).
        var event: [UInt8]?
        if op != EPOLL_CTL_DEL { event = try c.read(c.arg(3), count: eventSize) }
        let epoll = try c.file(0)
        let target = try c.file(2)
        let fd = c.int(2)
        var hostEvent = event ?? [UInt8](repeating: 0, count: eventSize)
        // EPOLLWAKEUP needs CAP_BLOCK_SUSPEND; without it Linux drops the
        // flag silently, as it does for the recorded program here.
        let requested = Bytes.u32(hostEvent, at: 0)
        let events = requested & ~EPOLLWAKEUP
        hostEvent.replaceSubrange(0..<4, with: Bytes.u32(events))
        let r = try c.host { _ throws(Errno) -> Int64 in
            guard let ep = epoll.hostFD, let h = target.hostFD else { throw .badf }
            return hostEvent.withUnsafeBytes { e in
                hostSyscall(SYS.epoll_ctl, Int(ep), Int(op), Int(h), Int(bitPattern: e.baseAddress))
            }
        }
        guard r == 0, let interest = epoll.epoll else { return r }
        switch op {
        case EPOLL_CTL_ADD: interest.add(fd: fd, file: target, events: events, data: Bytes.u64(hostEvent, at: 4))
        case EPOLL_CTL_MOD: interest.modify(fd: fd, file: target, events: events, data: Bytes.u64(hostEvent, at: 4))
        default: interest.remove(fd: fd, file: target)
        }
        return r
    }

    static func wait(_ c: SyscallCall, timeout: Nanoseconds?) throws -> SyscallOutcome {
        let maxevents = c.int(2)
        guard maxevents > 0, maxevents <= maxEvents else { throw Errno.inval }
        let address = c.arg(1)
        let (end, overflow) = address.addingReportingOverflow(UInt64(maxevents) * UInt64(eventSize))
        guard !overflow, end <= userEnd else { throw Errno.fault }
        let file = try c.file(0)
        guard let interest = file.epoll else { throw Errno.inval }

        let p = c.process
        let zero = timeout == .zero
        let deadline = DescriptorWait.deadline(c, timeout: timeout)
        let interrupting = SignalWait.deliverable(p, mask: p.signals.mask)
        let pendingInterrupt = p.pendingSignals() & interrupting != 0
        let signalfds = interest.signalfdSignals()
        let hostFD = file.hostFD
        if !zero && !pendingInterrupt,
           let parked = DescriptorWait.parkIfWaiting(c, hostFD: hostFD, deadline: deadline, wake: signalfds | interrupting) {
            return parked
        }
        // Fewer than the call's number, so that a count never reads as
        // SignalWait's restart (Linux may return fewer than maxevents).
        let capacity = min(Int(maxevents), 1024, Int(c.number) - 1)
        let r = try c.host { effects throws(Errno) -> Int64 in
            guard let h = hostFD else { throw .badf }
            var set = [pollfd(fd: h, events: Int16(POLLIN), revents: 0)]
            var buffer = [UInt8](repeating: 0, count: capacity * eventSize)
            while true {
                switch DescriptorWait.hostWait(c, &set, deadline: deadline, zeroTimeout: zero, signalfds: signalfds,
                                               interrupting: interrupting, pendingInterrupt: pendingInterrupt) {
                case .failed(let r): return r
                case .interrupted: return Errno.intr.result
                case .restart: return SignalWait.restart(c)
                case .timedOut, .ready(0): return 0
                case .ready:
                    let n = buffer.withUnsafeMutableBytes { b in
                        hostSyscall(SYS.epoll_wait, Int(h), Int(bitPattern: b.baseAddress), capacity, 0)
                    }
                    if n < 0 { return n }
                    if n > 0 {
                        try effects.write(address, buffer[0..<Int(n) * eventSize])
                        return n
                    }
                    // Readable, yet nothing to report (an event consumed
                    // meanwhile by another process sharing the instance).
                    if zero { return 0 }
                    TimerSyscalls.nap(0.001)
                }
            }
        }
        return r == SignalWait.restart(c) ? .restart : .result(r)
    }
}

/// What an epoll instance watches, as epoll_ctl left it: kept alike in
/// record and replay. An entry refers to the open file weakly, as Linux's
/// epitem does: once the file's last descriptor closes, it leaves the set.
public final class EpollInterest {
    struct Item {
        let fd: Int32
        weak var file: OpenFile?
        var events: UInt32
        var data: UInt64
    }

    private(set) var items: [Item] = []

    /// Entries whose file is still open.
    var live: [Item] {
        items.removeAll { $0.file == nil }
        return items
    }

    func add(fd: Int32, file: OpenFile, events: UInt32, data: UInt64) {
        items.removeAll { $0.file == nil }
        items.append(Item(fd: fd, file: file, events: events, data: data))
    }

    func modify(fd: Int32, file: OpenFile, events: UInt32, data: UInt64) {
        for i in items.indices where items[i].fd == fd && items[i].file === file {
            items[i].events = events
            items[i].data = data
        }
    }

    func remove(fd: Int32, file: OpenFile) {
        items.removeAll { $0.file == nil || ($0.fd == fd && $0.file === file) }
    }

    /// The signals read by the signalfds it watches, directly or through
    /// nested instances (Linux allows four levels of nesting).
    func signalfdSignals(depth: Int = 0) -> UInt64 {
        guard depth < 5 else { return 0 }
        return live.reduce(0) { set, item in
            guard let file = item.file else { return set }
            return set | (file.signalMask ?? 0) | (file.epoll?.signalfdSignals(depth: depth + 1) ?? 0)
        }
    }
}
