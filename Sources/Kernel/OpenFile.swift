import Glibc

/// An open file description, as Linux has one per open(2): shared by the
/// descriptors that dup(2) makes. While recording it owns a host fd (closed
/// when the last guest descriptor goes); during replay there is none, since
/// replay never touches the host's files.
public final class OpenFile {
    /// The host descriptor that performs the guest's I/O (recording only).
    public let hostFD: Int32?
    /// The path it was opened with (for reports and /proc views).
    public let path: String
    /// Descriptors inherited from detrec's stdout/stderr: replay writes what
    /// the guest wrote to them to its own stdout/stderr.
    public let echo: Int32?
    /// A directory detrec lists itself (/proc/self/fd): names and the next
    /// entry getdents64 returns. Recording only.
    public var listing: [(Int32, String)]?
    public var listingCursor = 0
    /// A signalfd: the signals it reads (see `SignalFD`). Its host
    /// descriptor, while recording, is an eventfd that is readable exactly
    /// while one of them is pending, so poll and O_NONBLOCK work on it.
    public var signalMask: UInt64?
    /// Whether that eventfd is readable now.
    var signalReady = false
    /// An epoll instance: what it watches (see `EpollSyscalls`).
    public var epoll: EpollInterest?
    /// What the host descriptor is, once looked up (`HostTransfer.kind`).
    var hostKind: HostTransfer.Kind?

    public init(hostFD: Int32?, path: String, echo: Int32? = nil) {
        self.hostFD = hostFD
        self.path = path
        self.echo = echo
    }

    deinit {
        if let fd = hostFD { close(fd) }
    }
}

/// The guest's descriptor table: numbers are the ones Linux would hand out
/// (lowest free), never detrec's own, so the guest cannot reach them.
public struct FileTable {
    public struct Entry {
        public var file: OpenFile
        public var closeOnExec: Bool
    }

    public private(set) var entries: [Int32: Entry] = [:]
    /// RLIMIT_NOFILE as the guest sees it.
    public var limit: Int32 = 1024

    public init() {}

    public subscript(fd: Int32) -> OpenFile? { entries[fd]?.file }

    public func lowestFree(from start: Int32 = 0) -> Int32? {
        var fd = max(0, start)
        while fd < limit {
            if entries[fd] == nil { return fd }
            fd += 1
        }
        return nil
    }

    public mutating func install(_ file: OpenFile, at fd: Int32, closeOnExec: Bool) {
        entries[fd] = Entry(file: file, closeOnExec: closeOnExec)
    }

    /// Installs at the lowest free number at or above `start`.
    public mutating func install(_ file: OpenFile, closeOnExec: Bool, from start: Int32 = 0) throws(Errno) -> Int32 {
        guard let fd = lowestFree(from: start) else { throw start >= limit ? .inval : .mfile }
        install(file, at: fd, closeOnExec: closeOnExec)
        return fd
    }

    @discardableResult
    public mutating func remove(_ fd: Int32) -> OpenFile? {
        entries.removeValue(forKey: fd)?.file
    }

    public mutating func setCloseOnExec(_ fd: Int32, _ value: Bool) {
        entries[fd]?.closeOnExec = value
    }

    public func closeOnExec(_ fd: Int32) -> Bool { entries[fd]?.closeOnExec ?? false }
}
