import Glibc
import Kernel
import KVMUser

/// A throwaway copy of the replay state (rr's word: a diversion), for what
/// gdb changes: `set var`, `set $reg`, `jump`, and the register and memory
/// writes with which `call` / `print f(x)` set up a function call.
///
/// The first write from gdb saves the thread's registers, XSAVE state,
/// signal state and the guest's memory (a `MemorySnapshot`), then lets the
/// writes through. A resume while the state is gdb's runs the guest freely
/// (`ProcessRunner.proceedDiverted`: no events, no preemption; syscalls by
/// `DiversionSyscalls`' rule) when it is gdb's function call, until a
/// breakpoint (gdb's at the return address), a fault or an interrupt. The
/// first resume that is the user's (gdb put the registers back, or the
/// user changed them and continues) restores the saved state and goes on
/// exactly as recorded, saying so when the state differed from the
/// recorded one. Reverse execution and `run` end a diversion first.
final class Diversion {
    private let registers: Registers
    private let fsBase: UInt64
    private let gsBase: UInt64
    private let extendedState: [UInt8]
    private let signals: SignalState
    private let memory: MemorySnapshot
    private let lastStop: StopReason
    private let thread: Int32
    private let event: Int
    /// The bytes from the end of the call scratch (below the red zone) to
    /// the end of its page, as saved: a page the call's frames share with
    /// live data is compared byte by byte.
    private let scratchEnd: UInt64
    private let liveTail: [UInt8]
    /// A gdb function call runs (the guest was resumed in the diversion).
    private(set) var calling = false
    /// Where the diversion's run last stopped with a fault or trap the
    /// guest would have got a signal for: resuming from there ends it.
    private var signaledAt: Registers?
    private var everSignaled = false
    /// What the guest's run in the diversion wrote to stdout/stderr, and
    /// which syscalls it was refused (`DiversionSyscalls`).
    let syscalls = DiversionSyscalls()

    /// gdb's call frames go below the red zone of the stopped function.
    static let redZone: UInt64 = 128
    static let scratchSize: UInt64 = 1 << 20

    init(session: ReplaySession) throws {
        let machine = session.machine
        registers = machine.registers
        fsBase = machine.fsBase
        gsBase = machine.gsBase
        extendedState = try machine.extendedState()
        signals = session.process.signals
        lastStop = session.lastStop
        thread = session.currentTID
        event = session.eventIndex
        let snapshot = MemorySnapshot()
        let patched = Array(session.memory.patches.keys)
        for a in patched { session.memory.liftPatch(a) }
        session.memory.capture(into: snapshot)
        for a in patched { session.memory.relayPatch(a) }
        memory = snapshot
        // The session's own slice checkpoint is older than this snapshot
        // (only the latest one of a memory can be restored).
        session.forgetCheckpoint()
        scratchEnd = registers.rsp &- Diversion.redZone
        let tail = Int(4096 - scratchEnd % 4096)
        liveTail = (try? session.memory.read(scratchEnd, count: tail, access: .kernel)) ?? []
    }

    // MARK: deciding what a resume is

    /// The registers are the saved ones (gdb put them back after a call,
    /// or only memory was changed).
    func registersAreSaved(_ session: ReplaySession) -> Bool {
        let m = session.machine
        var now = m.registers, then = registers
        now.rflags &= RegisterFile.writableFlags & ~ReplaySession.trapFlag
        then.rflags &= RegisterFile.writableFlags & ~ReplaySession.trapFlag
        return now == then && m.fsBase == fsBase && m.gsBase == gsBase
    }

    /// gdb set up a function call: the stack pointer is below the red zone
    /// and the return address on it carries gdb's breakpoint.
    private func isCallSetUp(_ session: ReplaySession) -> Bool {
        let rsp = session.machine.registers.rsp
        guard rsp < scratchEnd, scratchEnd - rsp <= Diversion.scratchSize,
              let ret = try? session.memory.readValue(rsp, as: UInt64.self, access: .kernel) else { return false }
        return session.breakpoints.contains(ret)
    }

    enum Resume {
        /// The diversion ran: report this stop.
        case stopped(StopReason)
        /// The diversion is over and restored: the replay resumes as
        /// recorded. The message, when the user's state was discarded.
        case ended(message: String?)
    }

    /// A resume (`c`, `s`, `vCont`) in the diversion.
    func resume(_ session: ReplaySession, step: Bool) throws -> Resume {
        // gdb's call (a new one, or one stopped inside the called function)
        // runs in the diversion; anything else resumes the recording.
        // A resume from where a signal stopped a call (gdb came back there
        // after calling another function, say) ends it, as the signal
        // would have ended the program.
        let newCall = isCallSetUp(session)
        let atSignal = signaledAt == session.machine.registers
        if registersAreSaved(session) || session.currentTID != thread || (!newCall && (atSignal || !calling)) {
            return .ended(message: try end(session))
        }
        calling = true
        let stop = try run(session, step: step)
        session.lastStop = stop
        return .stopped(stop)
    }

    // MARK: running

    private func run(_ session: ReplaySession, step: Bool) throws -> StopReason {
        let machine = session.machine
        let breakpoints = session.breakpoints
        // Off a breakpoint at RIP (or one step): one instruction with TF.
        if step || breakpoints.contains(machine.registers.rip) {
            let rip = machine.registers.rip
            let lifted = breakpoints.lift(rip)
            defer { if lifted { breakpoints.restore(rip) } }
            let hadTF = machine.registers.rflags & ReplaySession.trapFlag != 0
            machine.registers.rflags |= ReplaySession.trapFlag
            var stop = try session.runner.proceedDiverted()
            // KVM_RUN may return before running anything (an interrupt request left over).
            while stop == .interrupted && !session.interruptRequested() { stop = try session.runner.proceedDiverted() }
            if !hadTF { machine.registers.rflags &= ~ReplaySession.trapFlag }
            if stop == .interrupted { return .interrupt }
            switch stop {
            case .syscall:
                syscalls.perform(session)
                // SYSCALL left our TF in R11, where the guest's SYSRET would take it from.
                machine.registers.r11 &= ~ReplaySession.trapFlag
            case .trap(let e) where e.vector == GuestException.debug:
                break
            default:
                if let r = finish(stop, session) { return r }
            }
            if step { return .step }
            if breakpoints.contains(machine.registers.rip) { return .breakpoint(machine.registers.rip) }
        }
        while true {
            let stop = try session.runner.proceedDiverted()
            if case .syscall = stop {
                syscalls.perform(session)
                continue
            }
            if case .trap(let e) = stop, e.vector == GuestException.debug {
                // TF left over from a step (a signal frame kept it, say).
                machine.registers.rflags &= ~ReplaySession.trapFlag
                continue
            }
            if case .interrupted = stop {
                if session.interruptRequested() { return .interrupt }
                continue
            }
            if let r = finish(stop, session) { return r }
        }
    }

    /// A stop of the diversion's run as gdb sees it; nil to run on.
    private func finish(_ stop: ProcessRunner.DivertedStop, _ session: ReplaySession) -> StopReason? {
        let machine = session.machine
        switch stop {
        case .syscall, .interrupted:
            return nil
        case .trap(let e) where e.vector == GuestException.breakpoint && session.breakpoints.contains(e.rip &- 1):
            machine.registers.rip = e.rip &- 1
            return .breakpoint(e.rip &- 1)
        case .trap(let e):
            // The program's own int3 or #DB: it would get SIGTRAP.
            _ = e
            signaledAt = machine.registers
            everSignaled = true
            return .signal(SIGTRAP)
        case .fault(_, let e) where e.vector == GuestException.pageFault && e.address == e.rip && session.breakpoints.contains(e.rip):
            // gdb's return address on the stack (its int3 there, the page
            // not executable): the call is over, as if the int3 had run.
            return .breakpoint(e.rip)
        case .fault(let signal, _):
            signaledAt = machine.registers
            everSignaled = true
            return .signal(signal.signal)
        }
    }

    // MARK: ending

    /// Back to the saved state; a message when the state gdb leaves
    /// differed from it (what was discarded).
    func end(_ session: ReplaySession) throws -> String? {
        var changed: [String] = []
        if everSignaled { changed.append("the function called from gdb stopped with a signal") }
        if !registersAreSaved(session) { changed.append("registers") }
        if session.currentTID == thread, let pages = try? session.memory.changes(since: memory) {
            let scratch = scratchFrames(session.memory)
            let live = session.memory.physicalFrame(of: scratchEnd & ~4095)
            let n = pages.filter { differs(frame: $0.key, now: $0.value, scratch: scratch, live: live) }.count
            if let a = userWrites.first {
                let more = Set(userWrites).count - 1
                changed.append("memory at 0x\(String(a, radix: 16))" + (more > 0 ? " and \(more) more address\(more == 1 ? "" : "es")" : ""))
            } else if n > 0 {
                changed.append("memory (\(n) page\(n == 1 ? "" : "s"))")
            }
        }
        try restore(session)
        guard !changed.isEmpty else { return nil }
        return "detrec: the changes made from gdb (\(changed.joined(separator: "; "))) are discarded; the replay continues as recorded.\n"
    }

    /// gdb's memory writes outside the call scratch, in order (`set var`).
    private var userWrites: [UInt64] = []

    /// gdb wrote memory: a write that is not gdb's own call setup (below
    /// the red zone) is named when the diversion ends.
    func noteWrite(_ address: UInt64, count: Int) {
        let scratchStart = scratchEnd > Diversion.scratchSize ? scratchEnd - Diversion.scratchSize : 0
        let end = address &+ UInt64(count)
        if address < scratchStart || end > scratchEnd { userWrites.append(address) }
    }

    /// Whether a page (by its guest-physical frame, as `changes(since:)`
    /// names it) that changed since the snapshot holds anything but the
    /// call's scratch: the stack below the red zone of the stopped function
    /// (gdb's call frames) does not count.
    private func differs(frame: UInt64, now: [UInt8], scratch: Set<UInt64>, live: UInt64?) -> Bool {
        if frame == live {
            // The page of the red zone: the bytes from scratchEnd up are live.
            let from = Int(scratchEnd % 4096)
            return now.count != 4096 || Array(now[from...]) != liveTail
        }
        return !scratch.contains(frame)
    }

    /// The frames of the call scratch's whole pages.
    private func scratchFrames(_ memory: GuestMemory) -> Set<UInt64> {
        let scratchStart = scratchEnd > Diversion.scratchSize ? scratchEnd - Diversion.scratchSize : 0
        var out = Set<UInt64>()
        var page = scratchEnd & ~4095
        while page >= scratchStart + 4096 {
            page -= 4096
            if let f = memory.physicalFrame(of: page) { out.insert(f) }
        }
        return out
    }

    /// Puts the saved state back.
    private func restore(_ session: ReplaySession) throws {
        let running = session.runner.process
        let patched = Array(running.memory.patches.keys)
        for a in patched { running.memory.liftPatch(a) }
        defer { for a in patched { running.memory.relayPatch(a) } }
        try running.memory.restore(memory)
        let machine = running.machine
        machine.registers = registers
        machine.fsBase = fsBase
        machine.gsBase = gsBase
        try machine.setExtendedState(extendedState)
        running.signals = signals
        session.lastStop = lastStop
        session.forgetCheckpoint()
    }
}
