import Glibc

/// A self-pipe that a host signal to detrec (Ctrl-C, SIGTERM) makes
/// readable. Every wait detrec itself makes on the host while recording
/// (the scheduler's when every thread waits, a call's when nothing else
/// can run) polls it too, so a signal that arrives just before the wait
/// still ends it: the recording never hangs on a signal it missed.
public enum HostWake {
    /// The read end (-1 until `install`); non-blocking, close-on-exec.
    nonisolated(unsafe) public private(set) static var fd: Int32 = -1
    nonisolated(unsafe) private static var writeEnd: Int32 = -1

    /// Creates the pipe (recording, before the signal handlers).
    public static func install() {
        guard fd < 0 else { return }
        var pair: [Int32] = [-1, -1]
        let r = pair.withUnsafeMutableBufferPointer { hostSyscall(SYS.pipe2, Int(bitPattern: $0.baseAddress), Int(O_CLOEXEC | O_NONBLOCK)) }
        guard r == 0 else { return }
        fd = pair[0]
        writeEnd = pair[1]
    }

    /// From a signal handler: async-signal-safe.
    public static func notify() {
        guard writeEnd >= 0 else { return }
        var byte: UInt8 = 1
        _ = Glibc.write(writeEnd, &byte, 1)
    }

    /// Empties the pipe once the signal has been taken.
    public static func drain() {
        guard fd >= 0 else { return }
        var buffer = [UInt8](repeating: 0, count: 64)
        while Glibc.read(fd, &buffer, buffer.count) > 0 {}
    }

    /// The pipe as a pollfd, for waits that poll host descriptors.
    static var pollEntry: pollfd? { fd >= 0 ? pollfd(fd: fd, events: Int16(POLLIN), revents: 0) : nil }

    /// Blocks until a descriptor of `set` is ready, the deadline passes or
    /// a host signal arrives (recording, when nothing else can run). The
    /// revents of `set` say which were ready.
    public enum Woken { case ready, deadline, hostSignal, failed(Int32) }

    public static func wait(_ set: inout [pollfd], until deadline: MonotonicInstant?) -> Woken {
        var all = set
        let wakeIndex = all.count
        if let p = pollEntry { all.append(p) }
        while true {
            let timeout = deadline.map { $0.remaining().pollMilliseconds } ?? -1
            let n = Glibc.poll(&all, nfds_t(all.count), timeout)
            if n < 0 {
                if errno == EINTR { return .hostSignal }
                return .failed(errno)
            }
            for i in set.indices { set[i].revents = all[i].revents }
            if all.count > wakeIndex, all[wakeIndex].revents != 0 { return .hostSignal }
            if n > 0 { return .ready }
            if let deadline, deadline.hasPassed { return .deadline }
            if deadline == nil { continue }
        }
    }
}
