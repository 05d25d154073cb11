import Glibc

/// O_ASYNC: a descriptor that becomes ready signals its owner (SIGIO, or
/// the F_SETSIG signal). The host descriptor never gets O_ASYNC (its signal
/// would go to detrec); instead the recorder looks at the guest's O_ASYNC
/// descriptors after each syscall and at each thread switch (also while
/// every thread waits), and a descriptor that gained readiness since it
/// last looked signals its owner there, as a `signal` event in the trace,
/// which replay delivers at the same point. Linux signals each time data
/// arrives; this signals when readiness is gained, which is the same for
/// a reader that empties the descriptor on each signal. The siginfo is
/// SIGIO's SI_KERNEL one (an F_SETSIG signal carries no si_fd/si_band).
enum AsyncNotification {
    /// What counts as ready: POLL_IN, POLL_OUT, POLL_PRI, POLL_HUP's events.
    static let events = Int16(POLLIN | POLLOUT | POLLPRI | POLLHUP)
    static let SIGIO: Int32 = 29

    /// The open files of the recording with O_ASYNC set, once each.
    static func asyncFiles(_ family: ProcessFamily) -> [OpenFile] {
        var seen: Set<ObjectIdentifier> = []
        var out: [OpenFile] = []
        for p in family.processes where p.zombieStatus == nil {
            for entry in p.files.entries.values where entry.file.async {
                if seen.insert(ObjectIdentifier(entry.file)).inserted { out.append(entry.file) }
            }
        }
        return out
    }

    /// Recording: the signals due to owners of descriptors that became ready.
    static func dueSignals(_ family: ProcessFamily) -> [OutsideSignal] {
        guard family.asyncCount > 0 else { return [] }
        var due: [OutsideSignal] = []
        for file in asyncFiles(family) {
            guard let fd = file.hostFD else { continue }
            var p = pollfd(fd: fd, events: events, revents: 0)
            guard Glibc.poll(&p, 1, 0) >= 0 else { continue }
            let now = p.revents & events
            let gained = now & ~file.asyncSeen
            file.asyncSeen = now
            guard gained != 0 else { continue }
            let signal = file.ioSignal == 0 ? SIGIO : file.ioSignal
            due += targets(family, file.owner).map { OutsideSignal(tid: $0, signal: signal) }
        }
        return due
    }

    /// A thread of each process the owner names.
    static func targets(_ family: ProcessFamily, _ owner: FileOwner) -> [Int32] {
        guard owner.pid > 0 else { return [] }
        let live = family.processes.filter { $0.zombieStatus == nil && !$0.threads.isEmpty }
        switch owner.type {
        case FileOwner.tid:
            return family.find(owner.pid).map { [$0.1.tid] } ?? []
        case FileOwner.group:
            return live.filter { $0.processGroup == owner.pid }.compactMap { $0.threads.first?.tid }
        default:
            return live.filter { $0.pid == owner.pid }.compactMap { $0.threads.first?.tid }
        }
    }

    /// O_ASYNC set or cleared on `file`. What is ready when it is set is
    /// no news (Linux's fasync waits for new data too).
    static func set(_ family: ProcessFamily, _ file: OpenFile, on: Bool) {
        guard file.async != on else { return }
        file.async = on
        family.asyncCount += on ? 1 : -1
        if on, let fd = file.hostFD {
            var p = pollfd(fd: fd, events: events, revents: 0)
            file.asyncSeen = Glibc.poll(&p, 1, 0) > 0 ? p.revents & events : 0
        }
    }
}
