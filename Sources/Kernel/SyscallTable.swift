/// A syscall handler: decodes its arguments from the call, acts on the
/// process, and returns what the guest sees in RAX. Throwing an `Errno`
/// returns -errno; any other error stops the run.
public typealias SyscallHandler = (SyscallCall) throws -> Int64

/// The map from syscall numbers to handlers: the one place to look up which
/// handler serves a syscall. Handlers live in one file per family.
public struct SyscallTable {
    public private(set) var handlers: [UInt64: SyscallHandler] = [:]

    public init() {}

    public subscript(number: UInt64) -> SyscallHandler? { handlers[number] }

    mutating func add(_ number: UInt64, _ handler: @escaping SyscallHandler) {
        handlers[number] = handler
    }

    /// Every syscall detrec implements.
    public static let linux: SyscallTable = {
        var t = SyscallTable()
        FileSyscalls.register(&t)
        DescriptorSyscalls.register(&t)
        MemorySyscalls.register(&t)
        TimeSyscalls.register(&t)
        ProcessSyscalls.register(&t)
        SignalSyscalls.register(&t)
        FutexSyscalls.register(&t)
        ThreadSyscalls.register(&t)
        TimerSyscalls.register(&t)
        SocketSyscalls.register(&t)
        SignalWaitSyscalls.register(&t)
        SignalSending.register(&t)
        PosixTimerSyscalls.register(&t)
        TimerFDSyscalls.register(&t)
        SignalFD.register(&t)
        ExecSyscalls.register(&t)
        EpollSyscalls.register(&t)
        EventFD.register(&t)
        SelectSyscalls.register(&t)
        ProcessControlSyscalls.register(&t)
        InotifySyscalls.register(&t)
        FileSystemSyscalls.register(&t)
        CloseRange.register(&t)
        MessageSyscalls.register(&t)
        Unsupported.register(&t)
        return t
    }()
}
