/// A plain syscall handler: decodes its arguments from the call, acts on
/// the process, and returns what the guest sees in RAX. Throwing an
/// `Errno` returns -errno; any other error stops the run.
public typealias SyscallHandler = (SyscallCall) throws -> Int64

/// A handler that may do more than return a value: park its thread,
/// yield, exit, restart (`SyscallOutcome`).
public typealias SyscallOutcomeHandler = (SyscallCall) throws -> SyscallOutcome

/// How detrec serves a syscall.
public enum SyscallSupport: Equatable, Sendable {
    /// Computed by detrec's emulated kernel, the same in record and replay.
    case emulated
    /// Performed on the host while recording; replay takes its result and
    /// the memory it wrote from the trace.
    case host
    /// Returns an error without acting, for this reason (ENOSYS unless the
    /// note says otherwise).
    case refused(String)

    public var label: String {
        switch self {
        case .emulated: return "emulated"
        case .host: return "host"
        case .refused: return "refused"
        }
    }
}

/// Everything about one syscall number: Linux's facts (`LinuxSyscall`,
/// from SyscallNames.swift) and how detrec serves it.
public struct SyscallDescription {
    public let number: UInt64
    public let linux: LinuxSyscall
    public var handler: SyscallOutcomeHandler?
    public var support: SyscallSupport
    /// How detrec's handler differs from Linux or what it leaves out.
    public var note: String

    public var name: String { linux.name }
    public var waits: LinuxSyscall.Waits { linux.waits }
    public var producesOutput: Bool { linux.producesOutput }
    public var restart: LinuxSyscall.Restart { linux.restart }
}

/// One description per syscall number: the one place to look up which
/// handler serves a syscall and what the run loop must know about it.
/// Handlers live in one file per family.
public struct SyscallTable {
    /// Indexed by number; nil where x86-64 has no syscall.
    public private(set) var descriptions: [SyscallDescription?]
    /// What `add` records for handlers of the family being registered.
    private var familySupport: SyscallSupport = .emulated

    public init() {
        descriptions = (0..<SyscallNames.count).map { n in
            SyscallNames.linux(UInt64(n)).map {
                SyscallDescription(number: UInt64(n), linux: $0, handler: nil,
                                   support: .refused("not implemented: returns ENOSYS"), note: "")
            }
        }
    }

    public func description(_ number: UInt64) -> SyscallDescription? {
        number < UInt64(descriptions.count) ? descriptions[Int(number)] : nil
    }

    public func handler(_ number: UInt64) -> SyscallOutcomeHandler? { description(number)?.handler }

    /// The handler as a plain function returning RAX, for tests that call
    /// handlers directly; an outcome that is not a result throws.
    public subscript(number: UInt64) -> SyscallHandler? {
        guard let h = handler(number) else { return nil }
        return { c in
            let outcome = try h(c)
            guard let r = outcome.result else { throw NotAResult(outcome: outcome) }
            return r
        }
    }

    public struct NotAResult: Error { public var outcome: SyscallOutcome }

    /// Registers a plain handler (its result goes to RAX) with the support
    /// of the family being registered (`family`).
    mutating func add(_ number: UInt64, _ handler: @escaping SyscallHandler) {
        addOutcome(number, familySupport, note: "") { c in .result(try handler(c)) }
    }

    /// Registers a call performed on the host as it is (`passthrough`).
    mutating func add(_ number: UInt64, _ pass: Passthrough, note: String = "") {
        add(number, .host, note: note, pass.handler)
    }

    /// Registers a plain handler with its support and a note.
    mutating func add(_ number: UInt64, _ support: SyscallSupport, note: String = "", _ handler: @escaping SyscallHandler) {
        addOutcome(number, support, note: note) { c in .result(try handler(c)) }
    }

    /// Registers a handler that returns an outcome (parks, yields, exits,
    /// restarts), with its support and a note.
    mutating func addOutcome(_ number: UInt64, _ support: SyscallSupport, note: String = "", _ handler: @escaping SyscallOutcomeHandler) {
        guard number < UInt64(descriptions.count), var d = descriptions[Int(number)] else {
            preconditionFailure("syscall \(number) is not an x86-64 syscall number")
        }
        if d.handler != nil { registeredTwice.append(number) }
        d.handler = handler
        d.support = support
        d.note = note
        descriptions[Int(number)] = d
    }

    /// Numbers given a handler more than once: each syscall is described
    /// once, so a second registration is a mistake (a test checks it).
    public private(set) var registeredTwice: [UInt64] = []

    /// Explains why detrec refuses a syscall it has no handler for.
    mutating func refuse(_ number: UInt64, _ reason: String) {
        guard number < UInt64(descriptions.count), var d = descriptions[Int(number)], d.handler == nil else { return }
        d.support = .refused(reason)
        descriptions[Int(number)] = d
    }

    /// Registers a family of handlers whose plain `add`s have `support`.
    mutating func family(_ support: SyscallSupport, _ register: (inout SyscallTable) -> Void) {
        let saved = familySupport
        familySupport = support
        register(&self)
        familySupport = saved
    }

    /// Every syscall detrec implements.
    public static let linux: SyscallTable = {
        var t = SyscallTable()
        t.family(.host, FileSyscalls.register)
        t.family(.host, DescriptorSyscalls.register)
        t.family(.emulated, MemorySyscalls.register)
        t.family(.host, TimeSyscalls.register)
        t.family(.host, ClockSetting.register)
        t.family(.emulated, HostNames.register)
        t.family(.emulated, ProcessSyscalls.register)
        t.family(.emulated, SignalSyscalls.register)
        t.family(.emulated, FutexSyscalls.register)
        t.family(.emulated, ThreadSyscalls.register)
        t.family(.emulated, Unshare.register)
        t.family(.emulated, TimerSyscalls.register)
        t.family(.host, SocketSyscalls.register)
        t.family(.host, SpliceSyscalls.register)
        t.family(.emulated, SignalWaitSyscalls.register)
        t.family(.emulated, SignalSending.register)
        t.family(.emulated, PosixTimerSyscalls.register)
        t.family(.host, TimerFDSyscalls.register)
        t.family(.emulated, SignalFD.register)
        t.family(.emulated, ExecSyscalls.register)
        t.family(.emulated, WorkingDirectorySyscalls.register)
        t.family(.emulated, FileCreationMask.register)
        t.family(.host, EpollSyscalls.register)
        t.family(.host, EventFD.register)
        t.family(.host, SelectSyscalls.register)
        t.family(.emulated, ProcessControlSyscalls.register)
        t.family(.emulated, SchedAttributes.register)
        t.family(.host, InotifySyscalls.register)
        t.family(.host, FileSystemSyscalls.register)
        t.family(.emulated, CloseRange.register)
        t.family(.host, MessageSyscalls.register)
        t.family(.emulated, SystemVIPC.register)
        t.family(.emulated, SeccompSyscalls.register)
        t.family(.emulated, Ptrace.register)
        t.family(.host, IoctlRequests.register)
        t.family(.host, VectorTransfers.register)
        t.family(.emulated, IOPriority.register)
        t.family(.emulated, CredentialsSyscalls.register)
        t.family(.emulated, MemoryPolicySyscalls.register)
        t.family(.emulated, ProcessDescriptors.register)
        t.family(.emulated, Unsupported.register)
        return t
    }()

    /// The numbers whose calls can wait by their nature: the trace is
    /// flushed before their host part while recording.
    public func waitsByNature(_ number: UInt64) -> Bool { description(number)?.waits == .yes }

    /// Whether what the call writes may be the program's output.
    public func producesOutput(_ number: UInt64) -> Bool { description(number)?.producesOutput ?? false }

    public func restartRule(_ number: UInt64) -> LinuxSyscall.Restart { description(number)?.restart ?? .never }
}
