import Glibc
import Kernel
import KVMUser
import Trace

/// Why the replay stopped, as the stub reports it to gdb.
enum StopReason: Equatable {
    /// Before the first instruction (the program's entry, or ld.so's).
    case start
    /// At an inserted breakpoint (RIP is the breakpoint's address).
    case breakpoint(UInt64)
    /// One instruction done (`s`, `vCont;s`).
    case step
    /// A watched range changed; RIP is past the instruction that wrote it.
    case watch(Watchpoints.Kind, UInt64)
    /// gdb's interrupt (Ctrl-C).
    case interrupt
    /// The program's own int3 or #DB, not a debugger's: SIGTRAP.
    case guestTrap
    case exited(Termination)
}

/// Where the replay stands, precisely enough to come back to it by
/// replaying again: the number of events replayed, then the `hits`-th
/// execution of the instruction at `breakpoint` since that event (when the
/// last stop came from continuing to a breakpoint), then `steps`
/// instructions single-stepped. See docs/gdb.md.
struct ReplayPosition: Equatable, CustomStringConvertible {
    var event: Int
    var breakpoint: UInt64?
    var hits = 0
    var steps = 0
    /// False when the breakpoint was inserted after the replay had already
    /// run past `event`: earlier executions of it were not counted.
    var exact = true

    var description: String {
        var s = "event \(event)"
        if let b = breakpoint { s += ", hit \(hits) of 0x\(String(b, radix: 16))" + (exact ? "" : " (at least)") }
        if steps > 0 { s += ", +\(steps) instruction\(steps == 1 ? "" : "s")" }
        return s
    }
}

/// The replay's world with the debugger's hooks: it forwards everything to
/// the replaying world, and when asked, stops the vCPU right after the next
/// syscall completes (single-stepping a `syscall` instruction, whose
/// SFMASK clears TF).
final class DebugWorld: HostWorld {
    let inner: ReplayingWorld
    /// Stop the run once the next syscall has completed.
    var stopAfterSyscall = false
    /// Set when that stop was requested.
    var syscallCompleted = false

    init(_ inner: ReplayingWorld) { self.inner = inner }

    var isReplaying: Bool { true }
    func startupRandom() throws -> [UInt8] { try inner.startupRandom() }
    func enterSyscall(_ entry: SyscallEntry) throws -> Termination? { try inner.enterSyscall(entry) }
    func host(memory: GuestMemory, _ body: (inout HostEffects) throws(Errno) -> Int64) throws -> Int64 {
        try inner.host(memory: memory, body)
    }
    func exitSyscall(_ entry: SyscallEntry, result: Int64) throws {
        try inner.exitSyscall(entry, result: result)
        if stopAfterSyscall {
            stopAfterSyscall = false
            syscallCompleted = true
            // The next KVM_RUN returns at once: `proceed` says `.interrupted`
            // with the registers as the syscall left them.
            UserMachine.requestInterrupt()
        }
    }
    func pickThread(_ choose: () throws -> Int32) throws -> Int32 { try inner.pickThread(choose) }
    var currentThread: Int32 {
        get { inner.currentThread }
        set { inner.currentThread = newValue }
    }
    func belongsElsewhere(_ entry: SyscallEntry) throws -> Bool { try inner.belongsElsewhere(entry) }
    func processExit(status: Int32) throws { try inner.processExit(status: status) }
    func fatalSignal(_ signal: FatalSignal) throws { try inner.fatalSignal(signal) }
    func takeHostSignal() -> Int32? { inner.takeHostSignal() }
    func echo(_ bytes: [UInt8], to fd: Int32) { inner.echo(bytes, to: fd) }
}

/// Drives a replay for a debugger: continue, single-step, breakpoints,
/// watchpoints, and where it stopped. The guest only ever runs forward, as
/// recorded; nothing here changes what it computes.
final class ReplaySession {
    let process: Process
    let runner: ProcessRunner
    let world: DebugWorld
    let breakpoints: Breakpoints
    let watchpoints: Watchpoints
    /// The thread id gdb sees: the recorded one.
    let tid: Int32
    private(set) var lastStop: StopReason = .start
    private(set) var position: ReplayPosition
    /// The program's own trap, delivered when the replay resumes.
    private var pendingTrap: GuestException?
    /// Whether the replay ran since the position's event (for `exact`).
    private var ranSinceEvent = false
    private var hitCounts: [UInt64: Int] = [:]
    private var countedSinceEvent: Set<UInt64> = []
    /// Polls gdb for its interrupt byte while the replay runs.
    var interruptRequested: () -> Bool = { false }

    static let trapFlag: UInt64 = 0x100

    var machine: UserMachine { process.machine }
    var memory: GuestMemory { process.memory }
    var eventIndex: Int { world.inner.eventIndex }
    var termination: Termination? {
        if case .exited(let t) = lastStop { return t }
        return nil
    }

    init(process: Process, world: ReplayingWorld, tid: Int32) {
        self.process = process
        self.world = DebugWorld(world)
        runner = ProcessRunner(process: process, world: self.world)
        runner.debugTraps = true
        breakpoints = Breakpoints(memory: process.memory)
        watchpoints = Watchpoints(memory: process.memory)
        self.tid = tid
        position = ReplayPosition(event: world.eventIndex)
    }

    // MARK: breakpoints, with hit counting for positions

    func insertBreakpoint(_ address: UInt64) -> Bool {
        guard breakpoints.insert(address) else { return false }
        if !ranSinceEvent { countedSinceEvent.insert(address) }
        return true
    }

    func removeBreakpoint(_ address: UInt64) {
        breakpoints.remove(address)
    }

    // MARK: running

    /// Resumes until the next stop: one instruction when `step`, else until
    /// a breakpoint, a watchpoint, an interrupt or the end.
    func resume(step: Bool) throws -> StopReason {
        if let t = termination { return .exited(t) }
        let stop = try run(step: step)
        lastStop = stop
        return stop
    }

    private func run(step: Bool) throws -> StopReason {
        if let trap = pendingTrap {
            // The recording took this trap with no debugger: the program died of it.
            pendingTrap = nil
            let signal = Signals.forException(trap, mapped: true)
            try world.fatalSignal(signal)
            return .exited(.killed(signal: signal.signal))
        }
        watchpoints.snapshot()
        if step {
            if let r = try stepOne() { return r }
            if let w = watchpoints.changed() { return .watch(w.kind, w.address) }
            return .step
        }
        if !watchpoints.isEmpty { return try stepUntilStop() }
        // Step off a breakpoint at RIP: its int3 comes out for that one instruction.
        if breakpoints.contains(machine.registers.rip) {
            if let r = try stepOne() { return r }
        }
        while true {
            let before = eventIndex
            let s = try runner.proceed()
            moved(from: before)
            ranSinceEvent = true
            switch s {
            case .exited(let t):
                return .exited(t)
            case .trap(let e) where e.vector == GuestException.breakpoint && breakpoints.contains(e.rip &- 1):
                machine.registers.rip = e.rip &- 1
                return hit(e.rip &- 1)
            case .trap(let e):
                pendingTrap = e
                return .guestTrap
            case .interrupted:
                if interruptRequested() { return .interrupt }
            }
        }
    }

    /// Watchpoints set: one instruction at a time, comparing after each.
    private func stepUntilStop() throws -> StopReason {
        var count = 0
        while true {
            if count > 0, breakpoints.contains(machine.registers.rip) { return hit(machine.registers.rip) }
            if let r = try stepOne() { return r }
            if let w = watchpoints.changed() { return .watch(w.kind, w.address) }
            count += 1
            if count % 256 == 0, interruptRequested() { return .interrupt }
        }
    }

    private func hit(_ address: UInt64) -> StopReason {
        hitCounts[address, default: 0] += 1
        position.breakpoint = address
        position.hits = hitCounts[address]!
        position.steps = 0
        position.exact = countedSinceEvent.contains(address)
        return .breakpoint(address)
    }

    /// Resets the position when the replay went past an event.
    private func moved(from before: Int) {
        guard eventIndex != before else { return }
        position = ReplayPosition(event: eventIndex)
        hitCounts = [:]
        ranSinceEvent = false
        countedSinceEvent = breakpoints.addresses
    }

    /// Runs exactly one instruction; nil when it completed normally, else
    /// why the replay stopped instead (the end, the program's own trap).
    /// A breakpoint at RIP is lifted for it; a `syscall` instruction runs
    /// with TF clear (SFMASK would drop it anyway) and stops as soon as the
    /// syscall has completed.
    func stepOne() throws -> StopReason? {
        let rip = machine.registers.rip
        let lifted = breakpoints.lift(rip)
        defer { if lifted { breakpoints.restore(rip) } }
        let isSyscall = (try? memory.read(rip, count: 2, access: .kernel)) == [0x0f, 0x05]
        while true {
            let before = eventIndex
            world.syscallCompleted = false
            if isSyscall { world.stopAfterSyscall = true } else { machine.registers.rflags |= ReplaySession.trapFlag }
            let s: ProcessRunner.Stop
            do {
                s = try runner.proceed()
            } catch {
                world.stopAfterSyscall = false
                throw error
            }
            world.stopAfterSyscall = false
            machine.registers.rflags &= ~ReplaySession.trapFlag
            moved(from: before)
            switch s {
            case .exited(let t):
                return .exited(t)
            case .trap(let e) where e.vector == GuestException.debug && !isSyscall:
                completedStep()
                return nil
            case .trap(let e):
                ranSinceEvent = true
                pendingTrap = e
                return .guestTrap
            case .interrupted:
                // Either the syscall completed, or KVM_RUN returned before
                // running anything (an interrupt request left over): go again.
                if world.syscallCompleted {
                    completedStep()
                    return nil
                }
            }
        }
    }

    private func completedStep() {
        ranSinceEvent = true
        position.steps += 1
    }
}
