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
    /// Reverse execution reached the start of the recording (gdb: "No
    /// more reverse-execution history").
    case historyStart
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
    /// How the replay got here from the slice's start, as gdb drove it:
    /// what finds an inexact position again (and breakpoints' hits too).
    var path: [PathSegment] = []

    enum PathSegment: Equatable {
        /// Continued with these breakpoints inserted, to the first arrival at one of them.
        case run(Set<UInt64>)
        case steps(Int)
        /// Continued with these breakpoints inserted and these pages
        /// protected for watchpoints, through this many faults on them,
        /// each faulting instruction run (single-stepped with its page's
        /// own protection). None of the breakpoints was reached.
        case watched(Set<UInt64>, [UInt64: DebugFault], faults: Int)
        /// The same, to the next fault: before the faulting instruction.
        case toFault(Set<UInt64>, [UInt64: DebugFault])
    }

    /// This position continued to the next fault on `pages` with `stops`
    /// inserted, before the faulting instruction: found again only along
    /// the path.
    func beforeFault(_ stops: Set<UInt64>, _ pages: [UInt64: DebugFault]) -> ReplayPosition {
        var p = self
        p.breakpoint = nil
        p.hits = 0
        p.steps = 0
        p.exact = false
        p.path.append(.toFault(stops, pages))
        return p
    }

    mutating func append(steps n: Int) {
        if case .steps(let m)? = path.last { path[path.count - 1] = .steps(m + n) } else { path.append(.steps(n)) }
    }

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

    /// Stop the run as soon as this many events have been replayed, before
    /// any instruction of the slice that follows (reverse execution goes to
    /// positions this way).
    var stopAtEvent: Int?

    init(_ inner: ReplayingWorld) { self.inner = inner }

    /// After anything that may consume events: the next KVM_RUN returns at
    /// once when the wanted event count is reached.
    private func consumed() {
        if let e = stopAtEvent, inner.eventIndex >= e { UserMachine.requestInterrupt() }
    }

    var isReplaying: Bool { true }
    func startupRandom() throws -> [UInt8] { try inner.startupRandom() }
    func enterSyscall(_ entry: SyscallEntry) throws -> Termination? {
        defer { consumed() }
        return try inner.enterSyscall(entry)
    }
    func host(memory: GuestMemory, sharedFiles: [Range<UInt64>], _ body: (inout HostEffects) throws(Errno) -> Int64) throws -> HostOutcome {
        try inner.host(memory: memory, sharedFiles: sharedFiles, body)
    }
    func exitSyscall(_ entry: SyscallEntry, result: Int64) throws {
        try inner.exitSyscall(entry, result: result)
        consumed()
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
    func blocked(_ entry: SyscallEntry) throws {
        try inner.blocked(entry)
        consumed()
    }
    func takeStall() -> Bool { inner.takeStall() }
    func loadFile(_ read: () throws(Errno) -> FileContent) throws -> FileContent { try inner.loadFile(read) }
    func randomBytes(_ count: Int) throws -> [UInt8] { try inner.randomBytes(count) }
    func executablePath(_ opened: () -> String?) throws -> String? { try inner.executablePath(opened) }
    func checkData(_ bytes: ArraySlice<UInt8>) throws { try inner.checkData(bytes) }
    func shouldBlock(_ check: () -> Bool) -> Bool { inner.shouldBlock(check) }
    func signalEndsWait(_ stillWaits: () -> Bool) -> Bool { inner.signalEndsWait(stillWaits) }
    func pace(seconds: Double) { inner.pace(seconds: seconds) }
    func outsideSignals(_ due: () -> [OutsideSignal]) throws -> [OutsideSignal] {
        defer { consumed() }
        return try inner.outsideSignals(due)
    }
    func processExit(status: Int32) throws {
        try inner.processExit(status: status)
        consumed()
    }

    /// A death the debugger has not seen yet: stop before it, as gdb stops
    /// on a signal before the kernel kills the program.
    var pendingDeath: FatalSignal?
    struct DeathAhead: Error {}

    func processKilled(_ signal: FatalSignal) throws {
        try inner.processKilled(signal)
        consumed()
    }

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
    func preempted(_ point: PreemptionPoint) throws {
        try inner.preempted(point)
        consumed()
    }
    func interruptGuest(at deadline: Double?) { inner.interruptGuest(at: deadline) }
}

/// A stop a forward continue would have made, seen while replaying
/// towards another position (reverse execution looks for the last one).
struct Sighting {
    var position: ReplayPosition
    var stop: StopReason
}

/// A position that this replay cannot reach: it is not one the replay
/// passes through (a damaged position, or a different recording).
struct Unreachable: Error, CustomStringConvertible {
    var description: String
}

/// Drives a replay for a debugger: continue, single-step, breakpoints,
/// watchpoints, and where it stopped. The guest only ever runs forward, as
/// recorded; nothing here changes what it computes. Going backwards is a
/// fresh session run forward to an earlier position (`ReplayTimeline`).
final class ReplaySession {
    /// gdb's inferior: the first process, or the one `focus` chose (`detrec replay -p`).
    private(set) var process: Process
    let runner: ProcessRunner
    let world: DebugWorld
    private(set) var breakpoints: Breakpoints
    private(set) var watchpoints: Watchpoints
    /// The thread id gdb sees: the recorded one.
    private(set) var tid: Int32
    var lastStop: StopReason = .start
    private(set) var position: ReplayPosition
    /// The program's own trap, delivered when the replay resumes.
    private var pendingTrap: GuestException?
    /// Arrivals at each address since the slice (the run since the last
    /// event) began: breakpoint traps while continuing, and every
    /// instruction reached by a single step.
    private var arrivals: [UInt64: Int] = [:]
    /// The addresses whose every arrival in this slice was counted (they
    /// were inserted through every continue); nil: every address (only
    /// single steps ran in the slice, or nothing yet).
    private var trusted: Set<UInt64>?
    /// Polls gdb for its interrupt byte while the replay runs.
    var interruptRequested: () -> Bool = { false }
    /// A fault on a page protected for watchpoints that ended a continue
    /// (the faulting instruction has not run).
    private var watchFault: GuestException?
    /// The faults on protected pages the last `stepOne` took (each page
    /// was lifted and the instruction run again).
    private var stepFaults: [Watchpoints.Access] = []
    /// `stepOne` ends at a fault on a protected page instead (`watchFault`).
    private var faultEndsStep = false
    /// Replay checkpoints (Checkpoints/): while continuing, at the start
    /// of the slice after this many events, `onCheckpointEvent` is called
    /// (it may fork the replayer) and sets the next one.
    var checkpointAt: Int?
    var onCheckpointEvent: ((ReplaySession) -> Void)?

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

    // MARK: breakpoints

    func insertBreakpoint(_ address: UInt64) -> Bool { breakpoints.insert(address) }

    func removeBreakpoint(_ address: UInt64) { breakpoints.remove(address) }

    // MARK: running

    /// Resumes until the next stop: one instruction when `step`, else until
    /// a breakpoint, a watchpoint, an interrupt or the end.
    func resume(step: Bool) throws -> StopReason {
        if let t = termination { return .exited(t) }
        let from = position
        let inserted: Set<UInt64>? = step ? nil : breakpoints.addresses
        let stop = try run(step: step)
        lastStop = stop
        onResumed?(from, inserted, stop)
        return stop
    }

    /// After each resume gdb asked for: where it started, the breakpoints
    /// inserted (nil: a single step, which misses no address), the stop
    /// (RunHistory.swift).
    var onResumed: ((ReplayPosition, Set<UInt64>?, StopReason) -> Void)?

    /// `runner.proceed()`, with a coming death turned into a stop before it.
    private func proceed() throws -> ProcessRunner.Stop? {
        do {
            return try runner.proceed()
        } catch is DebugWorld.DeathAhead {
            return nil
        }
    }

    /// A stop that ends the run before anything else: a death or the
    /// program's own trap seen at the last stop.
    private func finishPending() throws -> StopReason? {
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
        return nil
    }

    private func run(step: Bool) throws -> StopReason {
        if let r = try finishPending() { return r }
        watchpoints.snapshot()
        if step {
            guard !watchpoints.isEmpty else { return try stepOne() ?? .step }
            // The pages protected for this one instruction, to see its reads.
            watchpoints.arm()
            defer { watchpoints.disarm() }
            if let r = try stepOne() { return r }
            if let w = watchpoints.hit(after: stepFaults) { return .watch(w.kind, w.address) }
            return .step
        }
        if !watchpoints.isEmpty { return try continueWatching() }
        return try continueToStop(stopAtEvent: nil) ?? .step
    }

    /// Continue with watchpoints at full speed: the watched pages are
    /// protected (`Watchpoints.arm`), each fault on them runs its
    /// instruction alone with the page's own protection (`watchedStep`),
    /// which is a hit or not; the replay stops after each event so that
    /// what a syscall wrote (host writes fault nothing) is compared.
    private func continueWatching() throws -> StopReason {
        watchpoints.arm()
        defer { watchpoints.disarm() }
        watchpoints.snapshot()
        while true {
            // Off a breakpoint at RIP, as `continueToStop` would, watching that instruction too.
            if breakpoints.contains(machine.registers.rip) {
                let event = eventIndex
                if let r = try watchedStep(fault: nil) { return r }
                if eventIndex != event { continue }
                if breakpoints.contains(machine.registers.rip) { return hit(machine.registers.rip) }
            }
            let event = eventIndex
            let stop = try continueToStop(stopAtEvent: event + 1)
            if let fault = watchFault {
                watchFault = nil
                if let r = try watchedStep(fault: fault) { return r }
                if breakpoints.contains(machine.registers.rip) { return hit(machine.registers.rip) }
                continue
            }
            if let r = stop { return r }
            // A new slice: what the syscall that ended the last one wrote.
            if let w = watchpoints.changedByHost() { return .watch(w.kind, w.address) }
        }
    }

    /// Runs the instruction at RIP alone, the pages it faults on lifted
    /// for it (the first, `fault`, already seen), then protects them again:
    /// a stop when it hit a watchpoint (or the replay ended), else nil.
    /// After a fault the position is along the path (`.watched`).
    private func watchedStep(fault: GuestException?) throws -> StopReason? {
        let before = position, event = eventIndex
        let stops = breakpoints.addresses, pages = memory.debugProtectedPages
        if let f = fault { memory.liftDebugProtection(f.address) }
        let r = try stepOne()
        stepFaults = (fault.map { [Watchpoints.Access($0)] } ?? []) + stepFaults
        memory.rearmDebugProtection()
        if let r { return r }
        if fault != nil, eventIndex == event {
            position = before
            position.breakpoint = nil
            position.hits = 0
            position.steps = 0
            position.exact = false
            if case .watched(let s, let p, let n)? = position.path.last, s == stops, p == pages {
                position.path[position.path.count - 1] = .watched(stops, pages, faults: n + 1)
            } else {
                position.path.append(.watched(stops, pages, faults: 1))
            }
        }
        if let w = watchpoints.hit(after: stepFaults) { return .watch(w.kind, w.address) }
        return nil
    }

    /// Continues with the inserted breakpoints until one is hit, the
    /// program's own trap, its end, gdb's interrupt, or (with `stopAtEvent`)
    /// the start of the slice after that many events; nil for the last.
    private func continueToStop(stopAtEvent: Int?) throws -> StopReason? {
        // Step off a breakpoint at RIP: its int3 comes out for that one instruction.
        if breakpoints.contains(machine.registers.rip) {
            if let r = try stepOne() { return r }
            if let e = stopAtEvent, eventIndex >= e { return nil }
            if breakpoints.contains(machine.registers.rip) { return hit(machine.registers.rip) }
        }
        willContinue()
        let stopOrCheckpoint = { [unowned self] in [stopAtEvent, checkpointAt].compactMap { $0 }.min() }
        world.stopAtEvent = stopOrCheckpoint()
        defer { world.stopAtEvent = nil }
        if let e = stopAtEvent, eventIndex >= e { return nil }
        while true {
            let before = eventIndex
            let stop = try proceed()
            moved(from: before, stepping: false)
            guard let s = stop else {
                guard let death = world.pendingDeath else { throw RunStopped("replay: the run stopped for no reason") }
                return .signal(death.signal)
            }
            switch s {
            case .exited(let t):
                return .exited(t)
            case .trap(let e) where e.vector == GuestException.breakpoint && breakpoints.contains(e.rip &- 1):
                machine.registers.rip = e.rip &- 1
                arrivals[e.rip &- 1, default: 0] += 1
                position.path.append(.run(breakpoints.addresses))
                return hit(e.rip &- 1)
            case .trap(let e) where e.vector == GuestException.pageFault && memory.isDebugProtected(e.address):
                // A watched page (`continueWatching` runs the instruction).
                watchFault = e
                return nil
            case .trap(let e) where e.vector == GuestException.debug:
                // A #DB while continuing: TF that leaked from a single step
                // (a signal frame saved it, say). A program that sets TF
                // itself would have died of it, which the trace would say.
                machine.registers.rflags &= ~ReplaySession.trapFlag
            case .trap(let e):
                pendingTrap = e
                return .guestTrap
            case .interrupted:
                if let e = stopAtEvent, eventIndex >= e {
                    // Nothing of the new slice ran: every count is complete.
                    trusted = nil
                    return nil
                }
                if let c = checkpointAt, eventIndex >= c, let take = onCheckpointEvent {
                    trusted = nil
                    checkpointAt = nil
                    take(self)
                    world.stopAtEvent = stopOrCheckpoint()
                }
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

    /// A stop at a breakpoint whose arrival is counted already.
    private func hit(_ address: UInt64) -> StopReason {
        position.breakpoint = address
        position.hits = arrivals[address, default: 0]
        position.steps = 0
        position.exact = trusted?.contains(address) ?? true
        position.interrupted = false
        return .breakpoint(address)
    }

    /// A continue runs past every address not inserted without counting it.
    private func willContinue() {
        trusted = trusted.map { $0.intersection(breakpoints.addresses) } ?? breakpoints.addresses
    }

    /// Resets the position when the replay went past an event.
    @discardableResult
    private func moved(from before: Int, stepping: Bool) -> Bool {
        guard eventIndex != before else { return false }
        position = ReplayPosition(event: eventIndex)
        arrivals = [:]
        // A step that crossed an event ran nothing of the new slice; a
        // continue ran it with the breakpoints inserted now.
        trusted = stepping ? nil : breakpoints.addresses
        return true
    }

    /// Runs exactly one instruction; nil when it completed normally, else
    /// why the replay stopped instead (the end, the program's own trap).
    /// A breakpoint at RIP is lifted for it; a `syscall` instruction runs
    /// with TF clear (SFMASK would drop it anyway) and stops as soon as the
    /// syscall has completed.
    func stepOne() throws -> StopReason? {
        if let r = try finishPending() { return r }
        let rip = machine.registers.rip
        let lifted = breakpoints.lift(rip)
        defer { if lifted { breakpoints.restore(rip) } }
        let code = (try? memory.read(rip, count: 2, access: .kernel)) ?? []
        let isSyscall = code == [0x0f, 0x05]
        // pushf (with an operand-size or REX prefix at most) would push our TF.
        let pushf = code.first == 0x9c || (code.count == 2 && (code[0] == 0x66 || code[0] & 0xf0 == 0x40) && code[1] == 0x9c)
        stepFaults = []
        // The pages lifted for this instruction are protected again after it.
        defer { if !stepFaults.isEmpty { memory.rearmDebugProtection() } }
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
            let newEvent = moved(from: before, stepping: true)
            guard let s = stop else {
                guard let death = world.pendingDeath else { throw RunStopped("replay: a single step stopped for no reason") }
                return .signal(death.signal)
            }
            switch s {
            case .exited(let t):
                return .exited(t)
            case .trap(let e) where e.vector == GuestException.debug && !isSyscall:
                if pushf { hideTrapFlag(wide: code.first != 0x66) }
                completedStep(newEvent: newEvent)
                return nil
            case .trap(let e) where e.vector == GuestException.pageFault && memory.isDebugProtected(e.address):
                // A page protected for watchpoints: the instruction again with
                // the page's own protection (the caller protects it again).
                if faultEndsStep {
                    watchFault = e
                    return .step
                }
                stepFaults.append(Watchpoints.Access(e))
                memory.liftDebugProtection(e.address)
            case .trap(let e):
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

    /// One instruction ran. Right after an event the position is the new
    /// slice's start; otherwise one more step from the last position. The
    /// arrival at the new RIP counts for every address.
    private func completedStep(newEvent: Bool) {
        guard !newEvent else { return }
        position.steps += 1
        position.append(steps: 1)
        arrivals[machine.registers.rip, default: 0] += 1
    }

    // MARK: going to a position (reverse execution)

    /// Runs forward to the start of the slice after `event` events (this
    /// session must be before it), reporting on the way every breakpoint
    /// hit and, with `eachSlice`, every slice start. Returns a stop that
    /// ended the run first (the end, a death), else nil.
    /// `exact` false: stop at the first slice start at or after `event`
    /// (several events may end one slice).
    func runToEvent(_ event: Int, exact: Bool = true, observe: ((Sighting) -> Void)? = nil, eachSlice: (() -> Void)? = nil) throws -> StopReason? {
        while eventIndex < event {
            let target = eachSlice == nil ? event : eventIndex + 1
            guard let stop = try continueToStop(stopAtEvent: target) else {
                eachSlice?()
                continue
            }
            if case .breakpoint = stop {
                observe?(Sighting(position: position, stop: stop))
                continue
            }
            lastStop = stop
            return stop
        }
        guard eventIndex == event || !exact else {
            throw Unreachable(description: "no slice of the replay starts after event \(event) (the next starts after \(eventIndex))")
        }
        return nil
    }

    /// Within this slice: continues to the `hits`-th arrival at `address`,
    /// reporting the breakpoint hits on the way (not that arrival itself).
    func runToArrival(_ address: UInt64, hits: Int, observe: ((Sighting) -> Void)? = nil) throws {
        let event = eventIndex
        let temporary = !breakpoints.addresses.contains(address)
        if temporary { guard breakpoints.insert(address) else { throw Unreachable(description: "0x\(String(address, radix: 16)) is not mapped") } }
        defer { if temporary { breakpoints.remove(address) } }
        let armed = !memory.debugProtectedPages.isEmpty
        while arrivals[address, default: 0] < hits {
            if armed, breakpoints.contains(machine.registers.rip), position != ReplayPosition(event: event) {
                // Off a breakpoint, watching that instruction too.
                if let stop = try observedStep(fault: nil, observe: { observe?($0) }) {
                    throw Unreachable(description: "the replay stopped (\(stop)) before arrival \(hits) at 0x\(String(address, radix: 16))")
                }
                if machine.registers.rip == address && arrivals[address, default: 0] == hits { break }
            }
            let stop = try continueToStop(stopAtEvent: event + 1)
            if let fault = watchFault {
                watchFault = nil
                if let stop = try observedStep(fault: fault, observe: { observe?($0) }) {
                    throw Unreachable(description: "the replay stopped (\(stop)) before arrival \(hits) at 0x\(String(address, radix: 16))")
                }
                guard eventIndex == event else { throw Unreachable(description: "the slice after event \(event) ended at a watched access") }
                if machine.registers.rip == address && arrivals[address, default: 0] == hits { break }
                continue
            }
            guard let stop else {
                throw Unreachable(description: "the slice after event \(event) has fewer than \(hits) arrivals at 0x\(String(address, radix: 16))")
            }
            guard case .breakpoint(let at) = stop else {
                throw Unreachable(description: "the replay stopped (\(stop)) before arrival \(hits) at 0x\(String(address, radix: 16))")
            }
            if at == address && arrivals[address, default: 0] == hits { break }
            if !temporary || at != address { observe?(Sighting(position: position, stop: stop)) }
        }
        position.breakpoint = address
        position.hits = hits
        position.steps = 0
        position.exact = true
        position.interrupted = false
    }

    /// With the watched pages protected: runs the instruction at RIP alone
    /// (after a fault on it, or off a breakpoint), reporting a watch hit
    /// as a sighting at the position before it. A stop that is not a hit
    /// is returned.
    private func observedStep(fault: GuestException?, observe: (Sighting) -> Void) throws -> StopReason? {
        var at = position
        if fault != nil {
            at.breakpoint = nil
            at.hits = 0
            at.steps = 0
            at.exact = false
            at.path.append(.toFault(breakpoints.addresses, memory.debugProtectedPages))
        }
        let r = try watchedStep(fault: fault)
        if let r, case .watch = r {
            observe(Sighting(position: at, stop: r))
            return nil
        }
        return r
    }

    /// Runs forward to the start of the slice after `event` events with
    /// the watched pages protected, reporting every breakpoint hit and
    /// every watch hit (at the position before the accessing instruction);
    /// `syscallWrote` gets each slice (its starting event count) whose
    /// syscall changed watched bytes (host writes fault nothing). Returns
    /// a stop that ended the run first (the end, a death), else nil.
    func scanWatching(to event: Int, observe: (Sighting) -> Void, syscallWrote: (Int) -> Void) throws -> StopReason? {
        watchpoints.arm()
        defer { watchpoints.disarm() }
        watchpoints.snapshot()
        while eventIndex < event {
            let slice = eventIndex
            if breakpoints.contains(machine.registers.rip), position != ReplayPosition(event: slice) {
                if let stop = try observedStep(fault: nil, observe: observe) { lastStop = stop; return stop }
                if eventIndex != slice {
                    if watchpoints.changedByHost() != nil { syscallWrote(slice) }
                    continue
                }
                if breakpoints.contains(machine.registers.rip) { observe(Sighting(position: position, stop: hit(machine.registers.rip))) }
                continue
            }
            let stop = try continueToStop(stopAtEvent: slice + 1)
            if let fault = watchFault {
                watchFault = nil
                if let stop = try observedStep(fault: fault, observe: observe) { lastStop = stop; return stop }
                if eventIndex == slice, breakpoints.contains(machine.registers.rip) {
                    observe(Sighting(position: position, stop: hit(machine.registers.rip)))
                }
                continue
            }
            if let stop {
                if case .breakpoint = stop {
                    observe(Sighting(position: position, stop: stop))
                    continue
                }
                lastStop = stop
                return stop
            }
            if watchpoints.changedByHost() != nil { syscallWrote(slice) }
        }
        guard eventIndex == event else {
            throw Unreachable(description: "no slice of the replay starts after event \(event) (the next starts after \(eventIndex))")
        }
        return nil
    }

    /// Within this slice, from its start: drives the replay along `path`
    /// as gdb did (the same breakpoints for each continue), reporting
    /// every hit of the breakpoints in `reported` on the way, not the end.
    func follow(_ path: [ReplayPosition.PathSegment], reporting reported: Set<UInt64>, observe: ((Sighting) -> Void)? = nil) throws {
        let event = eventIndex
        for (i, segment) in path.enumerated() {
            switch segment {
            case .steps(let n):
                // Searching: the watched pages protected, so that reads are seen too.
                let watching = observe != nil && !watchpoints.isEmpty
                if watching { watchpoints.arm() }
                defer { if watching { watchpoints.disarm() } }
                try stepWithin(n, observe: { if case .breakpoint(let a) = $0.stop, !reported.contains(a) { return }; observe?($0) })
            case .watched(let stops, let pages, let faults):
                try throughFaults(faults, stops: stops, pages: pages, observe: observe)
            case .toFault(let stops, let pages):
                try toNextFault(stops: stops, pages: pages)
            case .run(let stops):
                try withStops(stops) {
                    while true {
                        guard let stop = try continueToStop(stopAtEvent: event + 1) else {
                            throw Unreachable(description: "the slice after event \(event) ended before the position")
                        }
                        guard case .breakpoint(let at) = stop else {
                            throw Unreachable(description: "the replay stopped (\(stop)) before the position")
                        }
                        if stops.contains(at) { break }
                        if reported.contains(at) { observe?(Sighting(position: position, stop: stop)) }
                    }
                }
            }
            if i < path.count - 1, reported.contains(machine.registers.rip) {
                observe?(Sighting(position: position, stop: .breakpoint(machine.registers.rip)))
            }
        }
    }

    /// Within this slice, as a watched continue ran (`.watched`): through
    /// `faults` faults on `pages` with `stops` inserted, running each
    /// faulting instruction. Reports the watch hits on the way, each at
    /// the position before its instruction.
    func throughFaults(_ faults: Int, stops: Set<UInt64>, pages: [UInt64: DebugFault],
                       observe: ((Sighting) -> Void)? = nil) throws {
        guard faults > 0 else { return }
        let event = eventIndex
        try withStops(stops) {
            memory.setDebugProtection(pages)
            defer { memory.setDebugProtection([:]) }
            watchpoints.snapshot()
            for _ in 0..<faults {
                let fault = try nextFault(event: event, stops: stops)
                let at = position.beforeFault(stops, pages)
                let path = position.path
                memory.liftDebugProtection(fault.address)
                if let stop = try stepOne() { throw Unreachable(description: "the replay stopped (\(stop)) at a watched access") }
                stepFaults = [Watchpoints.Access(fault)] + stepFaults
                memory.rearmDebugProtection()
                guard eventIndex == event else { throw Unreachable(description: "the slice after event \(event) ended at a watched access") }
                position = at
                position.path = path
                if case .watched(let s, let p, let n)? = path.last, s == stops, p == pages {
                    position.path[path.count - 1] = .watched(stops, pages, faults: n + 1)
                } else {
                    position.path.append(.watched(stops, pages, faults: 1))
                }
                if let w = watchpoints.hit(after: stepFaults) {
                    observe?(Sighting(position: at, stop: .watch(w.kind, w.address)))
                }
            }
        }
    }

    /// Continues to the next fault on `pages` (with `stops` inserted),
    /// before the faulting instruction runs (`.toFault`).
    func toNextFault(stops: Set<UInt64>, pages: [UInt64: DebugFault]) throws {
        let event = eventIndex
        try withStops(stops) {
            memory.setDebugProtection(pages)
            defer { memory.setDebugProtection([:]) }
            _ = try nextFault(event: event, stops: stops)
        }
        position = position.beforeFault(stops, pages)
    }

    /// Runs `body` with the breakpoints at `stops` inserted, those gdb had
    /// not inserted taken out again afterwards.
    private func withStops<T>(_ stops: Set<UInt64>, _ body: () throws -> T) throws -> T {
        let added = stops.subtracting(breakpoints.addresses)
        defer { for a in added where breakpoints.contains(a) { breakpoints.remove(a) } }
        for a in added {
            guard breakpoints.insert(a) else { throw Unreachable(description: "0x\(String(a, radix: 16)) is not mapped") }
        }
        return try body()
    }

    /// Runs to the next fault on a protected page, in this slice, with
    /// the `stops` inserted (none of them reached: the path says so).
    private func nextFault(event: Int, stops: Set<UInt64>) throws -> GuestException {
        while true {
            let stop = try continueToStop(stopAtEvent: event + 1)
            if let fault = watchFault {
                watchFault = nil
                return fault
            }
            // A breakpoint of gdb's that the path's continue did not have.
            if case .breakpoint(let at)? = stop, !stops.contains(at) { continue }
            throw Unreachable(description: "the replay stopped (\(stop.map { "\($0)" } ?? "at the slice's end")) before a watched access")
        }
    }

    /// From here, how many instructions run before the next one that
    /// faults on `pages` (in this slice), single-stepping (that one does not run).
    func stepsToFault(pages: [UInt64: DebugFault]) throws -> Int {
        let event = eventIndex
        memory.setDebugProtection(pages)
        defer { memory.setDebugProtection([:]) }
        faultEndsStep = true
        defer { faultEndsStep = false }
        var count = 0
        while true {
            if let stop = try stepOne() {
                if watchFault != nil { watchFault = nil; return count }
                throw Unreachable(description: "the replay stopped (\(stop)) before a watched access")
            }
            count += 1
            guard eventIndex == event else { throw Unreachable(description: "the slice after event \(event) ended before a watched access") }
        }
    }

    /// Single-steps `count` instructions within this slice, reporting
    /// breakpoint arrivals and watchpoint writes on the way (the last
    /// arrival, at the end, is not reported). A write's sighting is the
    /// position before the writing instruction, where reverse execution
    /// stops.
    func stepWithin(_ count: Int, observe: ((Sighting) -> Void)? = nil) throws {
        var done = 0
        if count > 0 { try stepUntil({ done += 1; return done == count }, observe: observe) }
    }

    /// Single-steps within this slice until `done` says so after a step;
    /// returns the number of steps.
    @discardableResult
    func stepUntil(_ done: () -> Bool, observe: ((Sighting) -> Void)? = nil) throws -> Int {
        let event = eventIndex
        watchpoints.snapshot()
        var count = 0
        while true {
            let before = position
            if let stop = try stepOne() {
                throw Unreachable(description: "the replay stopped (\(stop)) after \(count) steps from \(before)")
            }
            count += 1
            guard eventIndex == event else {
                throw Unreachable(description: "the slice after event \(event) ended after \(count) steps, before the wanted position")
            }
            if let w = stepHit() { observe?(Sighting(position: before, stop: .watch(w.kind, w.address))) }
            if done() { return count }
            if breakpoints.contains(machine.registers.rip) {
                observe?(Sighting(position: position, stop: .breakpoint(machine.registers.rip)))
            }
        }
    }

    /// The watch the last step hit: by its faults when the watched pages
    /// are protected, else by a change of the bytes.
    private func stepHit() -> Watchpoints.Watch? {
        memory.debugProtectedPages.isEmpty ? watchpoints.changed() : watchpoints.hit(after: stepFaults)
    }

    /// Arrivals at `address` counted since the slice began.
    func arrivalCount(_ address: UInt64) -> Int { arrivals[address, default: 0] }

    /// Single-steps to the end of this slice (the next event), reporting
    /// as `stepWithin` does; returns how many instructions ran in it
    /// (the event's own instruction, a syscall say, included).
    func stepToSliceEnd(observe: ((Sighting) -> Void)? = nil) throws -> Int {
        let event = eventIndex
        watchpoints.snapshot()
        var count = 0
        while eventIndex == event {
            let before = position
            if let stop = try stepOne() {
                if case .exited = stop { lastStop = stop; return count + 1 }
                if case .signal = stop { lastStop = stop; return count }
                throw Unreachable(description: "the replay stopped (\(stop)) in the slice after event \(event)")
            }
            count += 1
            if let w = stepHit() { observe?(Sighting(position: before, stop: .watch(w.kind, w.address))) }
            if eventIndex == event, breakpoints.contains(machine.registers.rip) {
                observe?(Sighting(position: position, stop: .breakpoint(machine.registers.rip)))
            }
        }
        return count
    }

    // MARK: a checkpoint at a slice's start

    /// The guest's state at the start of a slice. Within a slice nothing
    /// but the running thread's registers and the guest's memory change
    /// (the emulated kernel changes only at events), so going back to a
    /// position in the same slice restores these and runs forward again,
    /// with no replay from the start.
    struct SliceCheckpoint {
        let event: Int
        let thread: Int32
        let registers: Registers
        let fsBase: UInt64
        let gsBase: UInt64
        let extendedState: [UInt8]
        let signals: SignalState
        let memory: MemorySnapshot
        /// Where it was taken, with the counts then.
        let position: ReplayPosition
        let arrivals: [UInt64: Int]
        let trusted: Set<UInt64>?
    }

    private(set) var checkpoint: SliceCheckpoint?

    /// Runs `body` with every int3 patch out of guest memory, so that a
    /// snapshot holds the program's own bytes whatever breakpoints change.
    private func withPatchesLifted<T>(_ body: () throws -> T) rethrows -> T {
        let patched = Array(memory.patches.keys)
        for a in patched { memory.liftPatch(a) }
        defer { for a in patched { memory.relayPatch(a) } }
        return try body()
    }

    /// Takes a checkpoint here, at the start of a slice (nothing of it ran).
    /// None when the slice ends in a recorded preemption of this thread
    /// (the runner counts hits towards it: replayed from the start then).
    func takeCheckpoint() throws {
        checkpoint = nil
        guard pendingTrap == nil, world.pendingDeath == nil, termination == nil,
              position == ReplayPosition(event: eventIndex) else { return }
        let running = runner.process
        if let p = try world.inner.recordedPreemption(), p.tid == running.current.tid { return }
        let snapshot = MemorySnapshot()
        withPatchesLifted { running.memory.capture(into: snapshot) }
        checkpoint = SliceCheckpoint(event: eventIndex, thread: running.current.tid, registers: running.machine.registers,
                                     fsBase: running.machine.fsBase, gsBase: running.machine.gsBase,
                                     extendedState: try running.machine.extendedState(), signals: running.signals, memory: snapshot,
                                     position: position, arrivals: arrivals, trusted: trusted)
    }

    /// Back to the checkpoint, when this session is still in its slice.
    func rollBack(toEvent event: Int) throws -> Bool {
        guard let c = checkpoint, c.event == event, c.position == ReplayPosition(event: event) else { return false }
        return try rollBack(toCheckpoint: ())
    }

    /// Back to the checkpoint wherever it was taken, when still in its slice.
    func rollBack(toCheckpoint: Void) throws -> Bool {
        let running = runner.process
        guard let c = checkpoint, eventIndex == c.event, running.current.tid == c.thread,
              world.pendingDeath == nil, termination == nil else { return false }
        try withPatchesLifted { try running.memory.restore(c.memory) }
        running.machine.registers = c.registers
        running.machine.fsBase = c.fsBase
        running.machine.gsBase = c.gsBase
        try running.machine.setExtendedState(c.extendedState)
        running.signals = c.signals
        pendingTrap = nil
        position = c.position
        arrivals = c.arrivals
        trusted = c.trusted
        lastStop = .step
        return true
    }

    /// Makes `p` gdb's inferior (ProcessChoice.swift), before gdb set any
    /// breakpoint: its threads, registers and memory from now on.
    func focus(on p: Process) {
        process = p
        breakpoints = Breakpoints(memory: p.memory)
        watchpoints = Watchpoints(memory: p.memory)
        tid = p.current.tid
    }

    /// Drops the slice checkpoint: a diversion took a newer memory
    /// snapshot, and only the latest one can be restored.
    func forgetCheckpoint() { checkpoint = nil }

    /// In a process restored from a replay checkpoint: nothing of the run
    /// the checkpoint was taken in goes on, and gdb's breakpoints and
    /// watchpoints now are the ones inserted.
    func restored(breakpoints wanted: Set<UInt64>, watches: [Watchpoints.Watch]) {
        world.stopAtEvent = nil
        world.stopAfterSyscall = false
        world.syscallCompleted = false
        watchFault = nil
        stepFaults = []
        faultEndsStep = false
        checkpoint = nil
        checkpointAt = nil
        for a in breakpoints.addresses.subtracting(wanted) { breakpoints.remove(a) }
        for a in wanted.subtracting(breakpoints.addresses) { _ = breakpoints.insert(a) }
        watchpoints.removeAll()
        for w in watches { _ = watchpoints.insert(kind: w.kind, address: w.address, length: w.length) }
    }

    /// Lets go of a session nobody will use again: the kernel's objects
    /// refer to each other (a process and its family), so the machine and
    /// its KVM descriptors would otherwise stay.
    func discard() {
        checkpoint = nil
        process.family.processes.removeAll()
    }

    /// Takes a reproduced position as this session's own (exact).
    func arrived(at target: ReplayPosition, stop: StopReason) {
        position = target
        lastStop = stop
    }
}
