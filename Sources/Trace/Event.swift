/// A write the recorder observed the kernel make into guest memory during a syscall;
/// replay performs the same write instead of running the syscall.
public enum MemoryWrite: Equatable, Sendable {
    case bytes(address: UInt64, data: [UInt8])
    /// `length` bytes of the stored file `sha256`, starting at `offset`, written at `address`.
    /// Lets mmap/read of a stored file cost a reference instead of a copy.
    case stored(address: UInt64, length: UInt64, sha256: String, offset: UInt64)

    public var address: UInt64 {
        switch self {
        case let .bytes(address, _): return address
        case let .stored(address, _, _, _): return address
        }
    }

    /// Number of guest bytes written.
    public var length: UInt64 {
        switch self {
        case let .bytes(_, data): return UInt64(data.count)
        case let .stored(_, length, _, _): return length
        }
    }
}

/// One system call as the recorder saw it complete.
public struct SyscallRecord: Equatable, Sendable {
    public var tid: Int32
    /// Progress count at the syscall (0 where the host has no PMU).
    public var ticks: UInt64
    /// Guest RIP of the instruction after SYSCALL.
    public var rip: UInt64
    public var number: UInt32
    /// Always 6 (rdi, rsi, rdx, r10, r8, r9); the writer rejects any other count.
    public var args: [UInt64]
    /// RAX after the syscall; -4095...-1 are -errno.
    public var result: Int64
    public var writes: [MemoryWrite]

    public init(tid: Int32, ticks: UInt64, rip: UInt64, number: UInt32,
                args: [UInt64], result: Int64, writes: [MemoryWrite]) {
        self.tid = tid
        self.ticks = ticks
        self.rip = rip
        self.number = number
        self.args = args
        self.result = result
        self.writes = writes
    }
}

/// One entry of the event stream, in the order replay must apply them.
public enum Event: Equatable, Sendable {
    /// Before the first instruction; `atRandom` is the AT_RANDOM auxv block given to the guest.
    case processStart(tid: Int32, atRandom: [UInt8])
    case syscall(SyscallRecord)
    /// exit_group.
    case exit(tid: Int32, status: Int32)
    /// The process was killed by a signal (a fault or an external one).
    case fatalSignal(tid: Int32, signal: Int32, code: Int32, rip: UInt64, address: UInt64)
    /// The thread parked in syscall `number` (entered at `rip`): the events
    /// that follow belong to other threads until it resumes (format 2).
    case blocked(tid: Int32, number: UInt32, rip: UInt64)

    public var tid: Int32 {
        switch self {
        case let .processStart(tid, _): return tid
        case let .syscall(r): return r.tid
        case let .exit(tid, _): return tid
        case let .fatalSignal(tid, _, _, _, _): return tid
        case let .blocked(tid, _, _): return tid
        }
    }

    /// Short name used by dump and in docs: processStart, syscall, exit, fatalSignal.
    public var kindName: String {
        switch self {
        case .processStart: return "processStart"
        case .syscall: return "syscall"
        case .exit: return "exit"
        case .fatalSignal: return "fatalSignal"
        case .blocked: return "blocked"
        }
    }
}
