import CHost
import Glibc
import KVMUser

/// The run loop that record and replay share: run the vCPU, hand each
/// SYSCALL to its handler, turn faults into signals, and tell the world
/// about each step. What differs between the modes is all in the world.
public final class ProcessRunner {
    /// The first process: its end is the recording's result, and the
    /// recording ends with it unless others of its session live on
    /// (`RecordingEnd.swift`).
    public let root: Process
    /// How the first process ended, while others run on after it.
    var rootEnd: RootEnd?
    /// The process on the vCPU now (fork makes more).
    public private(set) var process: Process
    let world: HostWorld
    let table: SyscallTable
    /// Unimplemented syscalls stop the run instead of returning ENOSYS.
    public var strict = false
    /// Faults retried because the host had just widened the page: a stale
    /// translation, not the guest's fault.
    private var spuriousFaults = 0
    /// The current slice of guest execution (Preemption.swift).
    var slice = SliceState()
    /// Host signals (Ctrl-C, a kill of detrec) that the first process
    /// handles, ignores or blocks, waiting to become its signals at the
    /// next event (recording only; `hostSignalArrived`).
    var outsideQueue: [Int32] = []

    public init(process: Process, world: HostWorld, table: SyscallTable = .linux) {
        self.process = process
        root = process
        self.world = world
        self.table = table
    }

    /// When set, a debugger drives the run: #BP and #DB stop `proceed`
    /// and go to it instead of becoming SIGTRAP for the guest.
    public var debugTraps = false

    /// Why `proceed` returned.
    public enum Stop: Equatable {
        case exited(Termination)
        /// A breakpoint (#BP: RIP is past the int3) or single-step trap (#DB),
        /// or a page fault on a page the debugger protects, with `debugTraps` set.
        case trap(GuestException)
        /// The host asked the vCPU to stop (`UserMachine.requestInterrupt`)
        /// and no host signal was pending for the guest.
        case interrupted
    }

    /// Runs the guest until it ends, or until a debugger trap or a host
    /// interruption when a debugger drives it.
    public func proceed() throws -> Stop {
        if !world.isReplaying { process.family.accounting.start(process.current) }
        while true {
            try beginSliceIfNew()
            let machine = process.machine
            switch try machine.run() {
            case .syscall:
                disarmCounter()
                // A window's re-run puts back what the syscall did (PreemptionWindow.swift).
                if slice.window?.cursor != nil {
                    try refeedSyscall()
                    continue
                }
                slice.syscall = SliceSyscall(number: machine.registers.rax, returnTo: machine.registers.rip)
                if let end = try handleSyscall() { return .exited(end) }
            case .exception(let e):
                // A page a debugger protects for its watchpoints: its fault,
                // before anything makes it the guest's (the stub runs the
                // instruction with the page's own protection, which faults
                // again if the guest's would).
                if debugTraps, e.vector == GuestException.pageFault, process.memory.isDebugProtected(e.address) {
                    return .trap(e)
                }
                // Before the preemption counter: a first touch of a reserved
                // page while the counter steps over its instruction leaves
                // the step as it is (the instruction runs again, stepped),
                // so the hits are the same whether the page was touched
                // before (a rolled-back run) or not (replay).
                switch DemandFault.handleFault(process, e, rip: machine.registers.rip) {
                case .mapped: continue
                case .outOfMemory(let fatal):
                    if let end = try drive(die(fatal)) { return .exited(end) }
                    continue
                case .notMine: break
                }
                switch try counterTrap(e) {
                case .ended(let end): return .exited(end)
                case .handled: continue
                case .notMine: break
                }
                if WriteXorExecute.handleFault(process, e) { continue }
                if GrowsDown.handleFault(process, e) { continue }
                if isSpurious(e) { continue }
                if let (site, kind) = PatchedInstructions.site(process, e) {
                    if kind == .cpuid {
                        PatchedInstructions.emulateCPUID(process, at: site)
                    } else if let end = try readTimestampCounter(at: site, kind: kind) {
                        return .exited(end)
                    } else if process.family.threads.count > 1 {
                        // An event like a syscall's: a thread reading the
                        // counter in a loop (a busy wait for a deadline)
                        // gives the vCPU up after a slice of them, or it
                        // would starve the others, its timers' waiters too.
                        process.current.syscallsInSlice += 1
                        if let end = try drive(.reschedule(.syscallDone)) { return .exited(end) }
                    }
                    continue
                }
                if debugTraps && (e.vector == GuestException.breakpoint || e.vector == GuestException.debug) {
                    return .trap(e)
                }
                let signal = Signals.forException(e, page: process.faultedPage(e))
                if process.current.trace != nil, let stopped = try traceFault(signal, e) {
                    if let end = try drive(stopped) { return .exited(end) }
                    continue
                }
                if let fatal = try SignalDelivery.deliverFault(process, signal, exception: e),
                   let end = try drive(die(fatal)) {
                    return .exited(end)
                }
            case .interrupted:
                if let signal = world.takeHostSignal() {
                    if let end = try hostSignalArrived(signal, rip: machine.registers.rip) { return .exited(end) }
                    preemptSoonForOutsideSignal()
                }
                if world.takeStall() { try handleStall() }
                if debugTraps { return .interrupted }
            }
        }
    }

    public func run() throws -> Termination {
        while true {
            if case .exited(let t) = try proceed() { return t }
        }
    }

    /// After a preemption: signals a timer made due are delivered here, and
    /// another thread may take the vCPU.
    func afterPreemption() throws -> Termination? {
        let process = self.process
        try raiseOutsideSignals()
        let next = try deliverSignals()
        guard case .resumeGuest = next, process.family.threads.count > 1 else { return try drive(next) }
        return try drive(.reschedule(.yielded))
    }

    /// Makes pending the signals of timers that expired and the host
    /// signals queued for the program (recording asks the clock and the
    /// queue, replay the trace). `everyProcess`: the timers of every
    /// process of the recording, not only the current one's (at a thread
    /// switch, so that a timer ends a wait in a process that is not
    /// running). Returns the host signals among them.
    @discardableResult
    private func raiseOutsideSignals(everyProcess: Bool = false) throws -> [Int32] {
        let process = self.process
        var fromHost: [Int32] = []
        let signals = try world.outsideSignals {
            defer { outsideQueue = [] }
            let owners = everyProcess ? process.family.processes.filter { $0.zombieStatus == nil } : [process]
            var due: [OutsideSignal] = []
            for p in owners {
                // A process without threads cannot be the target (it is ending).
                guard let tid = (p === process ? process.current : p.threads.first)?.tid else { continue }
                due += p.dueTimerSignals().map { OutsideSignal(tid: tid, signal: $0) }
            }
            // Descriptors with O_ASYNC that became ready signal their owners.
            due += AsyncNotification.dueSignals(process.family)
            return due + outsideQueue.map { OutsideSignal(tid: process.current.tid, signal: -$0) }
        }
        for s in signals {
            // A host signal is the first process's (docs/trace-format.md:
            // below zero), or its process group's (`hostSignalTargets`).
            let number = s.signal < 0 ? -s.signal : s.signal
            if s.signal < 0 { fromHost.append(number) }
            let targets = s.signal < 0 ? hostSignalTargets(number) : [process.family.find(s.tid)?.0 ?? process]
            for target in targets {
                SignalDelivery.generate(target, signal: number, info: SignalDelivery.siginfo(signal: number, code: Signals.SI_KERNEL))
            }
        }
        return fromHost
    }

    /// A host signal reached detrec while it records. When the program
    /// would die of it (the first process leaves it at its default,
    /// unblocked), or a user's stop signal (`Signals.endRecordingWhenRepeated`)
    /// comes again before the program took the first, the recording ends
    /// here as the program would; otherwise it waits in `outsideQueue` for
    /// the next event, and the program gets it there. Once the first
    /// process has ended, there is nobody to take it: a stop signal whose
    /// default is to end the process ends the recording
    /// (`RecordingEnd.swift`); any other is dropped, as Linux drops a
    /// signal for a pid that is gone.
    private func hostSignalArrived(_ signal: Int32, rip: UInt64) throws -> Termination? {
        let insistent = Signals.endRecordingWhenRepeated.contains(signal)
        if rootEnd != nil {
            guard insistent, ProcessRunner.terminatesByDefault(signal) else { return nil }
            return try endRecording(FatalSignal(signal: signal, code: Signals.fromOutside, rip: rip, address: 0))
        }
        if (insistent && outsideQueue.contains(signal)) || SignalDelivery.terminatesOnArrival(root, signal: signal) {
            return try endRecording(FatalSignal(signal: signal, code: Signals.fromOutside, rip: rip, address: 0))
        }
        // A standard signal already pending is not queued twice (Linux's
        // legacy_queue).
        if !outsideQueue.contains(signal) { outsideQueue.append(signal) }
        return nil
    }

    /// The process on the vCPU dies of a signal. A child ends as a zombie
    /// its parent can wait for, and another thread takes the vCPU; the
    /// recording ends when this was the last process it waits for
    /// (`RecordingEnd.swift`).
    func die(_ f: FatalSignal) throws -> Next {
        let ending = process
        if ending === root && !othersKeepRecording(after: ending) { return .end(try endRecording(f)) }
        try world.processKilled(f)
        endProcess(ending, status: ProcessSyscalls.waitStatus(killedBy: f.signal))
        if ending === root { rootEnd = .killed(f) }
        guard othersKeepRecording(after: ending) else { return .end(try endWithRoot()) }
        return .reschedule(.exited)
    }

    private func endRecording(_ f: FatalSignal) throws -> Termination {
        try world.fatalSignal(f)
        return .killed(signal: f.signal)
    }

    /// Delivers the current thread's pending signals on its way back to
    /// user code. A stop signal parks its process (JobControl): another
    /// process runs meanwhile, or, when none is left that could continue
    /// it, the recording itself waits stopped (`waitWhileStopped`).
    private func deliverSignals() throws -> Next {
        while true {
            if process.current.trace != nil, let stopped = try traceSignalDelivery() { return stopped }
            if let fatal = try SignalDelivery.deliverPending(process) { return try die(fatal) }
            guard process.stoppedBy != nil else { return .resumeGuest }
            let others = process.family.processes.contains { $0.zombieStatus == nil && $0.stoppedBy == nil }
            if others { return .reschedule(.yielded) }
            try waitWhileStopped()
        }
    }

    /// Every process of the recording is stopped, so only the outside can
    /// continue it: recording stops detrec itself (a shell sees the job
    /// stop, and `fg` or SIGCONT resumes it) and logs the SIGCONT that
    /// resumed it as a `signal` event; replay takes it from the trace.
    private func waitWhileStopped() throws {
        let continued = try world.outsideSignals {
            Glibc.kill(getpid(), SIGSTOP)
            return [OutsideSignal(tid: process.current.tid, signal: JobControl.SIGCONT)]
        }
        guard continued.contains(where: { $0.signal == JobControl.SIGCONT }) else {
            throw RunStopped("the recording ends while the program is stopped by \(Signals.name(process.stoppedBy ?? 0))")
        }
        for p in process.family.processes where p.stoppedBy != nil {
            SignalDelivery.generate(p, signal: JobControl.SIGCONT, info: SignalDelivery.siginfo(signal: JobControl.SIGCONT, code: Signals.SI_USER))
        }
    }

    /// A page fault on a page that now allows the access: the TLB or KVM's
    /// shadow held an older translation. Drop translations and retry, a few
    /// times at most.
    private func isSpurious(_ e: GuestException) -> Bool {
        guard e.vector == GuestException.pageFault, let code = e.errorCode, spuriousFaults < 4,
              let p = process.memory.protection(at: e.address) else { spuriousFaults = 0; return false }
        let write = code & 2 != 0, fetch = code & 16 != 0
        let allowed = p.contains(.read) && (!write || p.contains(.write)) && (!fetch || p.contains(.execute))
        guard allowed else { spuriousFaults = 0; return false }
        spuriousFaults += 1
        process.memory.translationsChanged = true
        return true
    }

    /// What the run loop does next on the way from a syscall back to
    /// guest code. Each step returns the next one and `drive` loops over
    /// them, so a thread that parks and one that resumes never nest calls
    /// however long the program runs.
    enum Next {
        /// Back to the vCPU with the current thread.
        case resumeGuest
        /// The recording ends (the first process exited or was killed).
        case end(Termination)
        /// Handle the syscall in the current thread's registers (a new one,
        /// or a parked one running again from the start).
        case runSyscall
        /// Complete a syscall with this result.
        case complete(SyscallEntry, result: Int64, yielded: Bool)
        /// Let the scheduler (replay: the trace) pick who runs next.
        case reschedule(Scheduler.Reason)
    }

    /// Runs steps until one goes back to guest code or ends the run.
    func drive(_ first: Next) throws -> Termination? {
        var next = first
        while true {
            switch next {
            case .resumeGuest: return nil
            case .end(let t): return t
            case .runSyscall: next = try dispatchSyscall()
            case .complete(let entry, let result, let yielded): next = try finish(entry, result: result, yielded: yielded)
            case .reschedule(let reason): next = try switchThreads(reason)
            }
        }
    }

    /// Handles the syscall in the registers; a termination when it ended the process.
    private func handleSyscall() throws -> Termination? { try drive(.runSyscall) }

    private func dispatchSyscall() throws -> Next {
        spuriousFaults = 0
        let machine = process.machine
        let regs = machine.registers
        let number = SyscallNumber.dispatched(regs.rax)
        let thread = process.current
        let entry = SyscallEntry(number: regs.rax, args: regs.syscallArguments, rip: regs.rip, tid: thread.tid)
        world.currentThread = thread.tid
        // A host signal that arrived while the guest ran: before this syscall.
        if let signal = world.takeHostSignal(), let end = try hostSignalArrived(signal, rip: entry.rip) { return .end(end) }
        // A tracer's syscall-enter-stop, then seccomp, as Linux's syscall_trace_enter;
        // once per call (a parked call running again went through them).
        let entering = thread.resumption?.entry != entry
        if entering, thread.trace != nil, let stopped = try traceSyscallEntry(entry, thread) { return stopped }
        if entering, thread.seccomp.mode != .disabled, let judged = try applySeccomp(entry, thread) { return judged }
        if let end = try world.enterSyscall(entry) { return .end(end) }
        let description = table.description(number)
        guard let handler = description?.handler else {
            let name = SyscallNames.name(number)
            if strict {
                throw RunStopped("unimplemented syscall \(name) (\(number)) at guest rip 0x\(String(entry.rip, radix: 16)) (--strict)")
            }
            process.report("unimplemented syscall \(name) (\(number)) returns ENOSYS", key: number, rip: entry.rip)
            return .complete(entry, result: Errno.nosys.result, yielded: false)
        }
        var call = SyscallCall(number: number, args: entry.args, rip: entry.rip, process: process, world: world)
        // A call that parked before runs again: what it did so far.
        let resumed = thread.resumption.flatMap { $0.entry == entry ? $0 : nil }
        call.resumedStart = resumed?.started
        // A call that may wait keeps when it started, for a restart that
        // goes on with the time it had left (`restartIfHandlerSaysSo`).
        thread.callStarted = resumed?.started ?? (description?.waits == .yes ? .now() : nil)
        call.interrupted = thread.interruptedWait
        thread.interruptedWait = false
        thread.resumption = nil
        if resumed == nil {
            thread.transferred = 0
            thread.received = []
            thread.receivedFlags = 0
            thread.connecting = false
            FIFOOpen.abandon(thread)
        }
        let outcome: SyscallOutcome
        do {
            outcome = try handler(call)
        } catch let e as Errno {
            outcome = .result(e.result)
        }
        switch outcome {
        case .result(let result):
            // A host signal cut the host call short: the program dies of it at
            // this syscall, or the call returns EINTR and the signal follows.
            if result == Errno.intr.result, let signal = world.takeHostSignal(),
               let end = try hostSignalArrived(signal, rip: entry.rip) {
                return .end(end)
            }
            return .complete(entry, result: result, yielded: false)
        case .yield:
            return .complete(entry, result: 0, yielded: true)
        case .restart:
            // RIP back on the SYSCALL; RAX gets the number as the result.
            process.machine.registers.rip &-= 2
            return .complete(entry, result: Int64(number), yielded: false)
        case .park(let condition):
            return try park(thread, entry, condition, started: resumed?.started)
        case .exit(let status, let wholeProcess):
            return try exit(entry, status: status, wholeProcess: wholeProcess || process.threads.count == 1)
        }
    }

    /// The thread parks in its syscall (a `blocked` event) and another runs.
    private func park(_ thread: GuestThread, _ entry: SyscallEntry, _ condition: WaitCondition,
                      started: MonotonicInstant?) throws -> Next {
        try world.blocked(entry)
        thread.blocked = BlockedSyscall(entry: entry, condition: condition)
        thread.resumption = Resumption(entry: entry, started: started ?? .now())
        if condition.completesWithResult { process.futexOrder.append(thread) }
        return .reschedule(.blocked)
    }

    /// exit and exit_group. A child process waits as a zombie for its
    /// parent's wait4 (an orphan is reaped at once); the recording ends
    /// with the last process it waits for (`RecordingEnd.swift`).
    func exit(_ entry: SyscallEntry, status: Int32, wholeProcess: Bool) throws -> Next {
        guard wholeProcess else {
            try world.exitSyscall(entry, result: 0)
            Ptrace.traceeEnded(process.current, of: process, status: ProcessSyscalls.waitStatus(exited: status))
            try exitThread(process.current)
            return .reschedule(.exited)
        }
        let ending = process
        let last = !othersKeepRecording(after: ending)
        if last && !world.isReplaying {
            // The program's last writes through shared file mappings reach their files.
            SharedMemory.push(ending.mm)
            SharedMemory.writeBack(ending.family)
        }
        if ending === root && last {
            try world.processExit(status: status)
            return .end(.exited(status))
        }
        try world.exitSyscall(entry, result: 0)
        endProcess(ending, status: ProcessSyscalls.waitStatus(exited: status))
        if ending === root { rootEnd = .exited(status) }
        return last ? .end(try endWithRoot()) : .reschedule(.exited)
    }

    /// Completes a syscall: logs it, returns the result, delivers signals,
    /// and lets the scheduler switch threads.
    private func finish(_ entry: SyscallEntry, result: Int64, yielded: Bool) throws -> Next {
        try world.exitSyscall(entry, result: result)
        process.machine.registers.rax = UInt64(bitPattern: result)
        if SyscallNumber.dispatched(entry.number) == SYS.rt_sigreturn { slice.sigreturnTo = process.machine.registers.rip }
        process.current.syscallsInSlice += 1
        if let fatal = process.pendingFault {
            process.pendingFault = nil
            return try die(fatal)
        }
        let process = self.process
        let fromHost = try raiseOutsideSignals()
        if result == Errno.intr.result { restartIfHandlerSaysSo(entry, interruptedBy: fromHost) }
        if process.current.trace != nil, let stopped = try traceSyscallExit(entry, result: result) { return stopped }
        let next = try deliverSignals()
        guard case .resumeGuest = next, process.family.threads.count > 1 else { return next }
        return .reschedule(yielded ? .yielded : .syscallDone)
    }

    /// Lets the scheduler (or, on replay, the trace) pick the next thread,
    /// and completes the syscall it is parked in, if any.
    private func switchThreads(_ reason: Scheduler.Reason) throws -> Next {
        let running = self.process
        // Where a thread may have to wait for others: timers of every
        // process and host signals due now become pending first, so that
        // they end the waits they interrupt (replay takes them here too).
        if reason != .syscallDone { try raiseOutsideSignals(everyProcess: true) }
        var ended: Termination?
        let tid = try world.pickThread {
            // When every thread waits, the scheduler blocks on the host until
            // a descriptor, a timeout, a timer or a host signal: `woke` makes
            // what came due pending, or ends the recording.
            try Scheduler.choose(running, reason: reason) {
                if let signal = world.takeHostSignal(),
                   let end = try hostSignalArrived(signal, rip: running.machine.registers.rip) {
                    ended = end
                    return true
                }
                try raiseOutsideSignals(everyProcess: true)
                return false
            }
        }
        if let ended { return .end(ended) }
        guard let (owner, next) = running.family.find(tid) else {
            throw RunStopped("replay diverged: the recording runs thread \(tid), which does not exist here")
        }
        if next !== owner.current || owner !== running { next.syscallsInSlice = 0 }
        // Each process has its own vCPU: switching processes only changes
        // which one runs; switching threads swaps state on that vCPU.
        process = owner
        SharedMemory.switchMemory(from: running.mm, to: owner.mm)
        try owner.switchTo(next)
        running.family.accounting.switching(to: next)
        let process = owner
        world.currentThread = tid
        guard let b = next.blocked else {
            // A thread coming back to user code takes the signals sent to it meanwhile.
            return try deliverSignals()
        }
        // A signal that ends the wait makes the syscall fail with EINTR
        // (restarted after an SA_RESTART handler), and it is delivered. (Stop
        // signals never wait here: they act when sent, JobControl.)
        let interrupted = b.result == nil && b.condition.interruptible
            && (next.stopInterrupted || (next.signalWait == 0 && process.interruptingSignals(of: next) != 0))
        next.stopInterrupted = false
        if !b.condition.completesWithResult {
            // The syscall starts over, now that it can proceed, or to return
            // EINTR (or what it had transferred) when a signal ended its wait.
            next.blocked = nil
            next.interruptedWait = interrupted
            process.machine.registers.rax = b.entry.number
            return .runSyscall
        }
        // Resume the parked futex wait with what woke it: 0 from a wake,
        // ETIMEDOUT at its deadline, EINTR when a signal ended it (replay:
        // the recorded result).
        if let end = try world.enterSyscall(b.entry) { return .end(end) }
        next.blocked = nil
        next.resumption = nil
        process.futexOrder.removeAll { $0 === next }
        let deadline = b.condition.deadline
        let result = try world.host(memory: process.memory) { _ in
            if let r = b.result { return r }
            if !interrupted, let deadline, deadline.hasPassed { return -Int64(ETIMEDOUT) }
            return Errno.intr.result
        }.result
        return .complete(b.entry, result: result, yielded: false)
    }

    /// An interrupted syscall whose signal has an SA_RESTART handler runs
    /// again once the handler returns, as Linux does it: the frame saves
    /// RIP back on the SYSCALL instruction and RAX as the syscall number.
    /// A host signal the program does not take now (ignored or blocked)
    /// would not have interrupted it at all: its call runs again too.
    private func restartIfHandlerSaysSo(_ entry: SyscallEntry, interruptedBy fromHost: [Int32]) {
        let ready = process.pendingSignals() & ~process.signals.mask
        let takenFromHost = fromHost.contains { ready & SignalState.bit($0) != 0 }
        if fromHost.isEmpty || takenFromHost {
            guard table.restartRule(SyscallNumber.dispatched(entry.number)) == .withSARestart, ready != 0 else { return }
            let signal = Int32(ready.trailingZeroBitCount + 1)
            let action = process.signals.action(signal)
            guard action.handler > SignalAction.SIG_IGN, action.flags & SignalAction.SA_RESTART != 0 else { return }
        }
        var regs = process.machine.registers
        regs.rip &-= 2
        regs.rax = entry.number
        process.machine.registers = regs
        // A signal the program does not take would not have interrupted the
        // call on Linux: a sleep, poll or epoll_wait goes on with the time it
        // had left (restart_block, a timeout from its first start). select,
        // pselect6 and ppoll wrote the time left into their timeout, which
        // the restarted call reads, as Linux's does.
        let rewritesTimeout = [SYS.select, SYS.pselect6, SYS.ppoll].contains(SyscallNumber.dispatched(entry.number))
        if !fromHost.isEmpty, !takenFromHost, !rewritesTimeout, let started = process.current.callStarted {
            process.current.resumption = Resumption(entry: entry, started: started)
        }
    }

    /// A patched rdtsc/rdtscp: the counter's value, read on the host while
    /// recording and from the trace on replay, logged as a pseudo-syscall
    /// at the instruction's address.
    private func readTimestampCounter(at site: UInt64, kind: PatchedInstruction) throws -> Termination? {
        let number = kind == .rdtsc ? TimestampCounter.rdtscNumber : TimestampCounter.rdtscpNumber
        let entry = SyscallEntry(number: number, args: [site, 0, 0, 0, 0, 0], rip: site, tid: process.current.tid)
        world.currentThread = entry.tid
        if let end = try world.enterSyscall(entry) { return end }
        let value = try world.host(memory: process.memory) { _ in Int64(bitPattern: chost_rdtsc()) }.result
        try world.exitSyscall(entry, result: value)
        var regs = process.machine.registers
        let tsc = UInt64(bitPattern: value)
        regs.rax = tsc & 0xffff_ffff
        regs.rdx = tsc >> 32
        if kind == .rdtscp { regs.rcx = 0 }     // IA32_TSC_AUX: CPU 0
        regs.rip = site + kind.length
        process.machine.registers = regs
        return nil
    }

    /// A child process ends: its descriptors close (a pipe's reader sees
    /// EOF), its parent may get SIGCHLD, and it stays as a zombie for wait4.
    private func endProcess(_ p: Process, status: Int32) {
        p.usageEnded()
        p.zombieStatus = status
        ProcessDescriptors.processEnded(p)
        for t in p.threads { Ptrace.traceeEnded(t, of: p, status: status) }
        // Robust mutexes in shared memory that its threads held go to the next waiter.
        for t in p.threads {
            RobustFutexes.release(t, of: p)
            FIFOOpen.abandon(t)
        }
        for t in p.threads { p.mm.leave(t) }
        p.threads = []
        SystemVIPC.processEnded(p)
        p.releaseVforkParent()
        Ptrace.tracerEnded(p)
        // Its reference to the descriptor table goes: they close unless a
        // CLONE_FILES sibling still has the table.
        p.fileTable = SharedFileTable()
        p.family.recordLocks.ended(pid: p.pid)
        ProcessControlSyscalls.orphaned(by: p)
        let (code, childStatus) = ProcessSyscalls.childEnd(status)
        JobControl.notifyParent(p, code: code, status: childStatus)
        // A parent outside the recording reaps it at once: init for an
        // orphan it adopted, detrec's parent for the first process.
        if p.parent == nil { p.family.processes.removeAll { $0 === p } }
    }

    /// A thread ends: its CHILD_CLEARTID word is cleared and woken (what
    /// pthread_join waits on), and it leaves the process.
    private func exitThread(_ thread: GuestThread) throws {
        process.threadLeft(thread)
        RobustFutexes.release(thread, of: process)
        FIFOOpen.abandon(thread)
        if thread.clearChildTID != 0 {
            try? process.memory.writeValue(thread.clearChildTID, UInt32(0))
            _ = process.wake(thread.clearChildTID, count: 1)
        }
        process.threads.removeAll { $0 === thread }
        process.mm.leave(thread)
    }
}
