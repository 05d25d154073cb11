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
    /// The program is about to die of this signal (a fault with no handler,
    /// or a signal the recording got from outside); registers show where.
    /// Resuming lets it die.
    case signal(Int32)
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
    /// run past `event` (earlier executions of it were not counted), or
    /// when gdb interrupted a continue at an arbitrary instruction.
    var exact = true
    /// Stopped by gdb's interrupt: the instructions run since `event` are not known.
    var interrupted = false

    var description: String {
        var s = "event \(event)"
        if interrupted { return s + ", then an interrupt (instructions since the event not counted)" }
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
    func host(memory: GuestMemory, _ body: (inout HostEffects) throws(Errno) -> Int64) throws -> HostOutcome {
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
    func blocked(_ entry: SyscallEntry) throws { try inner.blocked(entry) }
    func takeStall() -> Bool { inner.takeStall() }
    func loadFile(_ read: () throws(Errno) -> FileContent) throws -> FileContent { try inner.loadFile(read) }
    func randomBytes(_ count: Int) throws -> [UInt8] { try inner.randomBytes(count) }
    func checkData(_ bytes: ArraySlice<UInt8>) throws { try inner.checkData(bytes) }
    func shouldBlock(_ check: () -> Bool) -> Bool { inner.shouldBlock(check) }
    func pace(seconds: Double) { inner.pace(seconds: seconds) }
    func outsideSignals(_ due: () -> [OutsideSignal]) throws -> [OutsideSignal] { try inner.outsideSignals(due) }
    func processExit(status: Int32) throws { try inner.processExit(status: status) }

    /// A death the debugger has not seen yet: stop before it, as gdb stops
    /// on a signal before the kernel kills the program.
    var pendingDeath: FatalSignal?
    struct DeathAhead: Error {}

    func processKilled(_ signal: FatalSignal) throws { try inner.processKilled(signal) }

    func fatalSignal(_ signal: FatalSignal) throws {
        // The runner returns right after this call, so finishing it later
        // (`ReplaySession.die`) is the same as finishing it now.
        pendingDeath = signal
        throw DeathAhead()
    }
    func takeHostSignal() -> Int32? { inner.takeHostSignal() }
    func echo(_ bytes: [UInt8], to fd: Int32) { inner.echo(bytes, to: fd) }
    var eventCount: Int { inner.eventCount }
    func recordedPreemption() throws -> PreemptionPoint? { try inner.recordedPreemption() }
    func preempted(_ point: PreemptionPoint) throws { try inner.preempted(point) }
    func interruptGuest(at deadline: Double?) { inner.interruptGuest(at: deadline) }
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
    /// The thread on the vCPU (the recorded thread ids), else the recorded first one.
    var currentTID: Int32 { process.current.tid > 0 ? process.current.tid : tid }
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

    /// `runner.proceed()`, with a coming death turned into a stop before it.
    private func proceed() throws -> ProcessRunner.Stop? {
        do {
            return try runner.proceed()
        } catch is DebugWorld.DeathAhead {
            return nil
        }
    }

    private func run(step: Bool) throws -> StopReason {
        if let death = world.pendingDeath {
            world.pendingDeath = nil
            try world.inner.fatalSignal(death)
            return .exited(.killed(signal: death.signal))
        }
        if let trap = pendingTrap {
            // The recording took this trap with no debugger: the program died of it.
            pendingTrap = nil
            let signal = Signals.forException(trap, page: .refused)
            try world.inner.fatalSignal(signal)
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
            if breakpoints.contains(machine.registers.rip) { return hit(machine.registers.rip, counted: true) }
        }
        while true {
            let before = eventIndex
            let stop = try proceed()
            moved(from: before)
            ranSinceEvent = true
            guard let s = stop else { return .signal(world.pendingDeath!.signal) }
            switch s {
            case .exited(let t):
                return .exited(t)
            case .trap(let e) where e.vector == GuestException.breakpoint && breakpoints.contains(e.rip &- 1):
                machine.registers.rip = e.rip &- 1
                return hit(e.rip &- 1)
            case .trap(let e) where e.vector == GuestException.debug:
                // A #DB while continuing: TF that leaked from a single step
                // (a signal frame saved it, say). A program that sets TF
                // itself would have died of it, which the trace would say.
                machine.registers.rflags &= ~ReplaySession.trapFlag
            case .trap(let e):
                pendingTrap = e
                return .guestTrap
            case .interrupted:
                if interruptRequested() {
                    position.breakpoint = nil
                    position.steps = 0
                    position.exact = false
                    position.interrupted = true
                    return .interrupt
                }
            }
        }
    }

    /// Watchpoints set: one instruction at a time, comparing after each.
    private func stepUntilStop() throws -> StopReason {
        var count = 0
        while true {
            if count > 0, breakpoints.contains(machine.registers.rip) { return hit(machine.registers.rip, counted: true) }
            if let r = try stepOne() { return r }
            if let w = watchpoints.changed() { return .watch(w.kind, w.address) }
            count += 1
            if count % 256 == 0, interruptRequested() { return .interrupt }
        }
    }

    /// A stop at a breakpoint; `counted` when the step that arrived there counted it already.
    private func hit(_ address: UInt64, counted: Bool = false) -> StopReason {
        if !counted { hitCounts[address, default: 0] += 1 }
        position.breakpoint = address
        position.hits = hitCounts[address]!
        position.steps = 0
        position.exact = countedSinceEvent.contains(address)
        return .breakpoint(address)
    }

    /// Resets the position when the replay went past an event.
    @discardableResult
    private func moved(from before: Int) -> Bool {
        guard eventIndex != before else { return false }
        position = ReplayPosition(event: eventIndex)
        hitCounts = [:]
        ranSinceEvent = false
        countedSinceEvent = breakpoints.addresses
        return true
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
        let code = (try? memory.read(rip, count: 2, access: .kernel)) ?? []
        let isSyscall = code == [0x0f, 0x05]
        // pushf (with an operand-size or REX prefix at most) would push our TF.
        let pushf = code.first == 0x9c || (code.count == 2 && (code[0] == 0x66 || code[0] & 0xf0 == 0x40) && code[1] == 0x9c)
        while true {
            let before = eventIndex
            world.syscallCompleted = false
            if isSyscall { world.stopAfterSyscall = true } else { machine.registers.rflags |= ReplaySession.trapFlag }
            let stop: ProcessRunner.Stop?
            do {
                stop = try proceed()
            } catch {
                world.stopAfterSyscall = false
                throw error
            }
            world.stopAfterSyscall = false
            machine.registers.rflags &= ~ReplaySession.trapFlag
            let newEvent = moved(from: before)
            guard let s = stop else {
                ranSinceEvent = true
                return .signal(world.pendingDeath!.signal)
            }
            switch s {
            case .exited(let t):
                return .exited(t)
            case .trap(let e) where e.vector == GuestException.debug && !isSyscall:
                if pushf { hideTrapFlag(wide: code.first != 0x66) }
                completedStep(newEvent: newEvent)
                return nil
            case .trap(let e):
                ranSinceEvent = true
                pendingTrap = e
                return .guestTrap
            case .interrupted:
                // Either the syscall completed, or KVM_RUN returned before
                // running anything (an interrupt request left over): go again.
                if world.syscallCompleted {
                    completedStep(newEvent: newEvent)
                    return nil
                }
            }
        }
    }

    /// Takes TF out of the flags a single-stepped pushf left on the stack.
    private func hideTrapFlag(wide: Bool) {
        let rsp = machine.registers.rsp
        if wide, let v = try? memory.readValue(rsp, as: UInt64.self, access: .kernel) {
            try? memory.writeValue(rsp, v & ~ReplaySession.trapFlag, access: .kernel)
        } else if !wide, let v = try? memory.readValue(rsp, as: UInt16.self, access: .kernel) {
            try? memory.writeValue(rsp, v & ~UInt16(ReplaySession.trapFlag), access: .kernel)
        }
    }

    /// One instruction ran. Right after a syscall the position is the new
    /// event itself; otherwise one more step from the last position. An
    /// arrival at a breakpoint's address counts as one of its executions.
    private func completedStep(newEvent: Bool) {
        ranSinceEvent = true
        if !newEvent { position.steps += 1 }
        let rip = machine.registers.rip
        if breakpoints.contains(rip) { hitCounts[rip, default: 0] += 1 }
    }
}
