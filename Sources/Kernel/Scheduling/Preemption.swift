import KVMUser

/// Preempting a thread between two syscalls at a point replay finds again,
/// without a hardware branch counter (docs/preemption.md).
///
/// A *slice* is what one thread runs between two events. Recording takes a
/// checkpoint at the start of a slice when someone else may need the vCPU
/// (another thread can run, or a timer is armed). When the slice runs past
/// its quantum, the run loop rolls the thread back to the checkpoint, puts
/// an int3 on the instruction it had reached, and runs it again, counting
/// hits: the execution since the checkpoint is deterministic, so replay,
/// arming the same int3 at the same slice start, reaches the same hit. The
/// thread is preempted at a hit: right away when another thread waits,
/// when its timer is due otherwise. The trace gets a `preempt` event (rip,
/// hit count, a register digest) and whatever follows happens there.
public enum Preemption {
    /// The first time slice of a thread while someone else may need the
    /// vCPU; how it grows and comes back is `QuantumPolicy`'s.
    public static var baseQuantum = 0.05

    /// How long `thread` may compute now while others may need the vCPU.
    /// Under `--chaos` the base is random (1 to 20 ms), so that preemption
    /// lands in short unsynchronized stretches too (threads_race).
    static func quantum(_ thread: GuestThread, in process: Process) -> Double {
        var base = baseQuantum
        if var chaos = process.chaos {
            base = 0.001 + Double(chaos.next() % 20) * 0.001
            process.chaos = chaos
        }
        return thread.quantumPolicy.quantum(base: base)
    }
    /// The longest stretch spent counting hits (each one an exit) before
    /// preempting anyway, and how near a timer must be due to count toward it.
    static let longestCount = 1.0
    /// How long a counted run looks for the state the quantum ended in
    /// before it preempts anyway (and the quantum grows).
    static let hitsBeforeGivingUp: UInt64 = 200
    static let countBeforeGivingUp = 0.02
}

/// What the run loop knows about the current slice.
struct SliceState {
    /// `HostWorld.eventCount` when the slice started (-1: none yet).
    var marker = -1
    weak var thread: GuestThread?
    weak var process: Process?
    var started = 0.0
    var checkpoint: Checkpoint?
    var counter: HitCounter?
    /// When the watchdog was asked to interrupt the guest.
    var interruptAt: Double?
    /// The slice's quantum (recording).
    var quantum = Preemption.baseQuantum
    /// Where the thread was when the quantum ran out: if the counted run
    /// stops in the same state, the rolled-back stretch was pure spinning
    /// and nothing was lost.
    var interrupted: (registers: Registers, fsBase: UInt64, pages: [UInt64: [UInt8]])?
    var preempted = false
    /// The checkpoint's window (PreemptionWindow.swift): the syscalls since.
    var window: PreemptionWindow?
    /// The syscall that ended the slice.
    var syscall: SliceSyscall?
    /// `AddressSpace.generation` and `GuestMemory.frameChanges` when the slice started.
    var layout = (mappings: 0, frames: 0)
    /// The slice was rolled back to its checkpoint.
    var rolledBack = false
    /// The slice ended at an rt_sigreturn that went back to this
    /// instruction (`QuantumPolicy`).
    var sigreturnTo: UInt64?

    /// The thread's state at the start of the slice (recording).
    struct Checkpoint {
        var registers: Registers
        var fsBase: UInt64
        var gsBase: UInt64
        var extendedState: [UInt8]
        var signals: SignalState
        var memory: MemorySnapshot
        /// W^X phases and patches, which faults in the slice change.
        var code: WriteXorExecute.Phases
    }

    /// An int3 at `rip`, counting how often the thread reaches it.
    struct HitCounter {
        var rip: UInt64
        var hits: UInt64 = 0
        /// Replay, or a recording that rolled back twice: stop at exactly this hit.
        var target: UInt64?
        /// Hits that do not count as progress: the slice may start on `rip`.
        var minimum: UInt64
        /// The int3 is out while the thread single-steps over `rip`.
        var stepping = false
        /// A debugger was single-stepping when the hit came: its step ends
        /// after the instruction, so the #DB is its.
        var debuggerStepping = false
        var since: Double
    }
}

extension ProcessRunner {
    static let trapFlag: UInt64 = 0x100
    /// RFLAGS.RF: set in exception frames, not part of the program's state.
    static let resumeFlag: UInt64 = 0x10000

    /// Before the vCPU runs: a new slice when an event happened or another
    /// thread is on the vCPU.
    func beginSliceIfNew() throws {
        let marker = world.eventCount
        let thread = process.current
        if marker == slice.marker, slice.thread === thread, slice.process === process { return }
        let now = Scheduler.monotonicNow()
        // The previous slice ended at an event of its thread's own: its work
        // was kept (`QuantumPolicy`).
        if let previous = slice.thread, !slice.preempted, !world.isReplaying {
            previous.quantumPolicy.sliceEnded(sigreturnTo: slice.sigreturnTo)
        }
        disarmCounter()
        var previous = slice
        slice = SliceState(marker: marker, thread: thread, process: process, started: now)
        if world.isReplaying {
            if let point = try world.recordedPreemption(), point.tid == thread.tid {
                try armCounter(at: point.rip, target: point.hits, minimum: 1)
            }
            return
        }
        guard mayNeedTheVCPU() else {
            process.memory.stopNotingHostWrites()
            interrupt(at: nil)
            return
        }
        slice.layout = (process.space.generation, process.memory.frameChanges)
        if let window = continuedWindow(after: &previous, marker: marker, now: now) {
            slice.checkpoint = previous.checkpoint
            slice.window = window
        } else {
            try takeCheckpoint(reusing: previous.checkpoint?.memory, now: now)
        }
        slice.quantum = Preemption.quantum(thread, in: process)
        interrupt(at: now + slice.quantum)
    }

    /// The thread's state now, as the slice's checkpoint, and a new window from it.
    private func takeCheckpoint(reusing reused: MemorySnapshot?, now: Double) throws {
        let machine = process.machine
        let memory = reused ?? MemorySnapshot()
        process.memory.capture(into: memory)
        let xs = try machine.extendedState()
        slice.checkpoint = .init(registers: machine.registers, fsBase: machine.fsBase, gsBase: machine.gsBase,
                                 extendedState: xs, signals: process.signals, memory: memory,
                                 code: WriteXorExecute.phases(process.mm))
        PreemptionStats.checkpoints += 1
        if process.memory.notesHostWrites, !PreemptionWindow.disabled {
            slice.window = PreemptionWindow(started: now)
            process.memory.startNotingHostWrites()
        } else {
            process.memory.stopNotingHostWrites()
        }
    }

    /// A host signal the program handles arrived while it computes: stop
    /// it at the next exact point, as for a due timer (a slice without a
    /// checkpoint takes it at its next syscall instead).
    func preemptSoonForOutsideSignal() {
        guard slice.checkpoint != nil, slice.counter == nil else { return }
        interrupt(at: Scheduler.monotonicNow())
    }

    /// Asks the watchdog to interrupt the guest at `deadline` (nil: never).
    private func interrupt(at deadline: Double?) {
        slice.interruptAt = deadline
        world.interruptGuest(at: deadline)
    }

    /// Someone else may want the vCPU during this slice: a thread that can
    /// run or may become runnable without this one (a descriptor, a
    /// timeout), or a timer of this process.
    private func mayNeedTheVCPU() -> Bool {
        if process.earliestTimerDeadline() != nil || !outsideQueue.isEmpty { return true }
        return process.family.threads.contains { t in
            guard t !== process.current else { return false }
            guard let b = t.blocked else { return true }
            switch b.condition {
            // A host descriptor can become ready at any moment, unless only
            // recorded threads feed it (a pipe between recorded processes):
            // then it changes at their syscalls, which end this slice.
            case .host(let r):
                guard r.deadline == nil, OpenFile.onlyFedByRecording(r.descriptors) else { return true }
                return b.result != nil || process.family.canRun(t) || r.isReady()
            // Guest state changes only at another thread's event (a child's
            // exit, a wake, a semop), which ends this slice first: such a
            // waiter needs the vCPU mid-slice only if it can run already or
            // has a timeout. (A parent in wait4 made every slice of its
            // child take a checkpoint.)
            case .futex, .signals, .killable, .guest, .guestUntil:
                return b.result != nil || b.condition.deadline != nil || process.family.canRun(t)
            }
        }
    }

    private func othersRunnable() -> Bool {
        process.family.threads.contains { $0 !== process.current && process.family.canRun($0) }
    }

    /// The watchdog interrupted the guest: roll the slice back and start
    /// counting, or stop counting at an exact hit, or let it go on.
    func handleStall() throws {
        let now = Scheduler.monotonicNow()
        let machine = process.machine
        guard let checkpoint = slice.checkpoint, let due = slice.interruptAt else {
            // Only the liveness watchdog fires in a slice without a
            // checkpoint, and then nobody should need the vCPU.
            // (A host signal waits for the next syscall.)
            let timerDue = process.earliestTimerDeadline().map { $0 <= now } ?? false
            guard timerDue || othersRunnable() else { return }
            throw RunStopped("thread \(process.current.tid) computes without a syscall (guest rip 0x\(String(machine.registers.rip, radix: 16))) while \(timerDue ? "a timer's signal is due" : "another thread waits to run"), and its slice has no checkpoint to preempt it from; the recording stops here")
        }
        guard now >= due else { return }   // a late kick from an earlier slice
        // Re-running a window's earlier slices: the counted slice comes after.
        if slice.window?.cursor != nil {
            interrupt(at: now + Preemption.longestCount)
            return
        }
        let rip = machine.registers.rip
        if var counter = slice.counter {
            // Counting took too long: stop at the last hit seen, exactly.
            guard counter.hits >= counter.minimum else {
                interrupt(at: now + Preemption.longestCount)
                return
            }
            counter.target = counter.hits
            try restartCounting(at: counter.rip, target: counter.target, minimum: counter.minimum)
            return
        }
        let timer = process.earliestTimerDeadline()
        let wanted = othersRunnable() || !outsideQueue.isEmpty || (timer.map { $0 - now <= Preemption.longestCount } ?? false)
        guard wanted else {
            // Nothing is due soon: let the slice go on, and look again then.
            interrupt(at: timer.map { $0 - Preemption.longestCount } ?? now + slice.quantum)
            return
        }
        // The entry stubs are no place to stop: look again in a moment.
        guard rip < Layout.systemBase, process.memory.protection(at: rip)?.contains(.execute) == true else {
            interrupt(at: now + 0.002)
            return
        }
        slice.interrupted = (machine.registers, machine.fsBase, try process.memory.changes(since: checkpoint.memory))
        let startRIP = sliceStartRegisters?.rip ?? checkpoint.registers.rip
        try restartCounting(at: rip, target: nil, minimum: startRIP == rip ? 2 : 1)
        interrupt(at: now + Preemption.longestCount)
    }

    /// Puts the thread and its memory back as they were at the slice start.
    func rollBack() throws {
        guard let c = slice.checkpoint else { return }
        disarmCounter()
        let machine = process.machine
        try process.memory.restore(c.memory)
        WriteXorExecute.restore(process.mm, c.code)
        machine.registers = c.registers
        machine.fsBase = c.fsBase
        machine.gsBase = c.gsBase
        try machine.setExtendedState(c.extendedState)
        process.signals = c.signals
    }

    func armCounter(at rip: UInt64, target: UInt64?, minimum: UInt64) throws {
        do { try process.memory.insertPatch(rip) } catch {
            throw RunStopped("cannot count hits at guest rip 0x\(String(rip, radix: 16)): \(error)")
        }
        slice.counter = .init(rip: rip, target: target, minimum: minimum, since: Scheduler.monotonicNow())
    }

    /// Takes the int3 out and clears a pending single-step.
    func disarmCounter() {
        guard let c = slice.counter else { return }
        if c.stepping {
            process.memory.relayPatch(c.rip)
            if !c.debuggerStepping { process.machine.registers.rflags &= ~ProcessRunner.trapFlag }
        }
        process.memory.removePatch(c.rip)
        slice.counter = nil
    }

    /// What a #BP or #DB was to the hit counter.
    enum CounterTrap {
        /// Not the counter's: the exception is the program's (or a debugger's).
        case notMine
        /// The counter took it; the guest runs on.
        case handled
        /// The counter preempted the thread here, and the run ended.
        case ended(Termination)
    }

    func counterTrap(_ e: GuestException) throws -> CounterTrap {
        guard var c = slice.counter else { return .notMine }
        let machine = process.machine
        if c.stepping {
            // The step is over (#DB), or the instruction faulted: either way
            // the int3 goes back and TF must not leak into the guest.
            if !c.debuggerStepping { machine.registers.rflags &= ~ProcessRunner.trapFlag }
            c.stepping = false
            slice.counter = c
            process.memory.relayPatch(c.rip)
            if e.vector == GuestException.debug && !c.debuggerStepping { return .handled }
            return .notMine
        }
        guard e.vector == GuestException.breakpoint, machine.registers.rip == c.rip &+ 1,
              process.memory.patches[c.rip] != nil else { return .notMine }
        machine.registers.rip = c.rip
        c.hits += 1
        slice.counter = c
        if c.hits >= c.minimum, case .preempt(let spun) = decide(c) {
            if let end = try preempt(hits: c.hits, spun: spun) { return .ended(end) }
            return .handled
        }
        if debugTraps, process.memory.patchHolders(c.rip) > 1 {
            // A debugger's breakpoint here too: it stops, and steps over it.
            machine.registers.rip = c.rip &+ 1
            return .notMine
        }
        if process.patchedSites[c.rip] != nil, machine.registers.rflags & ProcessRunner.trapFlag == 0 {
            // The original is itself patched (rdtsc, cpuid): it runs as its
            // patch does, logged or answered from the CPU model. Stepped
            // natively it would read the host's counter or, on hosts that do
            // not trap cpuid, the host's own CPUID (found by cpuidfast).
            machine.registers.rip = c.rip &+ 1
            return .notMine
        }
        // Step over the original instruction, then put the int3 back.
        process.memory.liftPatch(c.rip)
        c.debuggerStepping = machine.registers.rflags & ProcessRunner.trapFlag != 0
        machine.registers.rflags |= ProcessRunner.trapFlag
        c.stepping = true
        slice.counter = c
        return .handled
    }

    private enum HitDecision {
        case goOn
        /// `spun`: whether the rolled-back stretch was only spinning, when
        /// deciding already found out.
        case preempt(spun: Bool?)
    }

    private func decide(_ c: SliceState.HitCounter) -> HitDecision {
        if let target = c.target { return c.hits == target ? .preempt(spun: nil) : .goOn }
        let now = Scheduler.monotonicNow()
        if othersRunnable() {
            // Prefer the hit where the thread was when its quantum ran out
            // (a spin-wait gets there within a few hits): nothing is lost.
            let spun = rolledBackOnlySpinning()
            let giveUp = c.hits >= Preemption.hitsBeforeGivingUp || now - c.since >= Preemption.countBeforeGivingUp
            return spun || giveUp ? .preempt(spun: spun) : .goOn
        }
        if let t = process.earliestTimerDeadline(), t <= now { return .preempt(spun: nil) }
        if !outsideQueue.isEmpty { return .preempt(spun: nil) }
        return now - c.since >= Preemption.longestCount ? .preempt(spun: nil) : .goOn
    }

    /// Stops the thread here: logs (or checks) the point, delivers what a
    /// timer made due, and lets the scheduler pick who runs next.
    private func preempt(hits: UInt64, spun: Bool?) throws -> Termination? {
        guard let c = slice.counter else { return nil }
        disarmCounter()
        let thread = process.current
        let point = PreemptionPoint(tid: thread.tid, rip: c.rip, hits: hits,
                                    registers: ProcessRunner.digest(process.machine.registers))
        world.currentThread = thread.tid
        try world.preempted(point)
        interrupt(at: nil)
        if !world.isReplaying { thread.quantumPolicy.preempted(at: c.rip, threwAway: !(spun ?? rolledBackOnlySpinning())) }
        slice.checkpoint = nil
        slice.preempted = true
        return try afterPreemption()
    }

    /// The thread stopped where it already was when its quantum ran out
    /// (same registers, same memory): what the rollback threw away was a
    /// spin that changed nothing, so its quantum need not grow.
    private func rolledBackOnlySpinning() -> Bool {
        guard let (registers, fsBase, pages) = slice.interrupted, let c = slice.checkpoint else { return false }
        let ignored = ProcessRunner.trapFlag | ProcessRunner.resumeFlag
        var now = process.machine.registers, then = registers
        now.rflags &= ~ignored; then.rflags &= ~ignored
        return now == then && process.machine.fsBase == fsBase && ((try? process.memory.matches(c.memory, changes: pages)) ?? false)
    }

    /// FNV-1a over the registers replay compares at a preemption.
    static func digest(_ r: Registers) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for v in [r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rsp, r.rbp, r.r8, r.r9, r.r10, r.r11,
                  r.r12, r.r13, r.r14, r.r15, r.rip, r.rflags & ~ProcessRunner.resumeFlag] {
            for i in 0..<8 {
                h ^= (v >> (8 * UInt64(i))) & 0xff
                h = h &* 0x100_0000_01b3
            }
        }
        return h
    }
}
