import Glibc
import KVMUser

/// One preemption checkpoint for several slices of one thread
/// (docs/preemption.md, "Windows").
///
/// A checkpoint at every slice start costs a dirty-log harvest and the
/// write-protect faults that re-arming the log brings, for every syscall
/// the thread makes while another thread is runnable or a timer is armed.
/// A window instead keeps the checkpoint of its first slice and, at each
/// later slice start, what the syscall that ended the slice before did to
/// the thread: its registers and FS/GS bases as the guest resumes, and the
/// pages detrec wrote or gave back while handling it, as they are then.
/// Execution between syscalls is deterministic, so a rollback to the
/// window's checkpoint followed by a run that puts these back at each
/// syscall exit, without running the handler again, reaches exactly the
/// state the current slice started in; counting hits then goes on as for
/// a single slice, and the trace is the same (a preemption's hits count
/// from the slice start). Replay is unchanged.
///
/// A window ends (the next slice takes a checkpoint of its own) at anything
/// that state does not capture: another thread or process, more than one
/// event since the slice began (signals, rdtsc, a park), a syscall that did
/// not return to the instruction after it (a signal handler, a restart), a
/// change of the address space's mappings or of the frame behind a page
/// (the re-run would see the new page tables), the calls that replace or add threads or registers, a
/// rollback, or the window's bounds (slices, age, bytes), which also bound
/// the re-run.
struct PreemptionWindow {
    /// One syscall of the window: what the guest resumed with.
    struct Refeed {
        var call: SliceSyscall
        var registers: Registers
        var fsBase: UInt64
        var gsBase: UInt64
        var frames: [UInt64]
        var bytes: [UInt8]
    }

    var refeeds: [Refeed] = []
    let started: Double
    var bytes = 0
    /// After a rollback: the next refeed to put back at a syscall exit.
    var cursor: Int?
    /// The counter to arm once every refeed is back.
    var pending: (rip: UInt64, target: UInt64?, minimum: UInt64)?

    static let mostSlices = 64
    static let longestAge = 0.02
    static let mostBytes = 4 << 20

    /// Syscalls whose effect on the thread is more than registers and
    /// written pages: signal returns, new or replaced threads and programs,
    /// exits, tracing.
    static let ending: Set<UInt64> = [15, 56, 57, 58, 59, 60, 101, 231, 322, 435]

    init(started: Double) { self.started = started }

    /// Whether another slice may join: not re-running, and within the bounds.
    func hasRoom(now: Double) -> Bool {
        cursor == nil && refeeds.count < PreemptionWindow.mostSlices
            && now - started < PreemptionWindow.longestAge && bytes < PreemptionWindow.mostBytes
    }

    /// `DETREC_PREEMPTION_WINDOWS=off`: a checkpoint at every slice start, as before (for comparison).
    static let disabled = getenv("DETREC_PREEMPTION_WINDOWS").map { String(cString: $0) == "off" } ?? false
}

/// How windows worked out in this recording, printed at its end with
/// `DETREC_PREEMPTION_STATS=1` (benchmarks, and a test that windows are used).
public enum PreemptionStats {
    public static var checkpoints = 0
    public static var joined = 0
    public static var rerunsThroughRefeeds = 0
    public static let wanted = getenv("DETREC_PREEMPTION_STATS").map { String(cString: $0) == "1" } ?? false
    public static var summary: String {
        "preemption: \(checkpoints) checkpoints, \(joined) slices joined a window, "
            + "\(UserMachine.exceptionsDeliveredAfterInterrupt) exceptions in flight delivered after an interrupt, "
            + "\(rerunsThroughRefeeds) re-runs through refeeds, "
            + "\(UserMachine.dirtyLogHarvests) dirty page log harvests"
    }
}

/// The syscall that ended a slice, as the run loop saw it exit.
struct SliceSyscall {
    var number: UInt64
    var returnTo: UInt64
}

extension ProcessRunner {
    /// A slice of the same thread starts right after a plain syscall:
    /// the window of the slice before goes on, with that syscall's refeed.
    /// The window is taken out of `previous`, so that appending to its
    /// refeeds does not copy them all (at every syscall).
    func continuedWindow(after previous: inout SliceState, marker: Int, now: Double) -> PreemptionWindow? {
        guard previous.window?.hasRoom(now: now) == true, previous.checkpoint != nil, !previous.preempted, !previous.rolledBack,
              previous.thread === process.current, previous.process === process,
              marker == previous.marker + 1, let call = previous.syscall,
              !PreemptionWindow.ending.contains(call.number),
              previous.layout == (process.space.generation, process.memory.frameChanges),
              process.memory.notesHostWrites else { return nil }
        let machine = process.machine
        guard machine.registers.rip == call.returnTo, var window = previous.window else { return nil }
        previous.window = nil
        let (frames, bytes) = process.memory.takeNotedFrames()
        window.refeeds.append(.init(call: call, registers: machine.registers,
                                    fsBase: machine.fsBase, gsBase: machine.gsBase, frames: frames, bytes: bytes))
        window.bytes += bytes.count
        PreemptionStats.joined += 1
        return window
    }

    /// Starts the counted run at `rip` from the window's checkpoint: back
    /// to the checkpoint, then (if the window holds later slices) through
    /// their syscalls by refeed, and the counter goes in where the current
    /// slice began.
    func restartCounting(at rip: UInt64, target: UInt64?, minimum: UInt64) throws {
        let signals = process.signals
        try rollBack()
        slice.rolledBack = true
        guard var window = slice.window, !window.refeeds.isEmpty else {
            try armCounter(at: rip, target: target, minimum: minimum)
            return
        }
        // Nothing in the slices re-run changes the emulated signal state:
        // it stays what it is now, as at the current slice's start.
        process.signals = signals
        process.memory.stopNotingHostWrites()
        PreemptionStats.rerunsThroughRefeeds += 1
        window.cursor = 0
        window.pending = (rip, target, minimum)
        slice.window = window
    }

    /// Where the current slice started: the registers its hits count from.
    var sliceStartRegisters: Registers? {
        slice.window?.refeeds.last?.registers ?? slice.checkpoint?.registers
    }

    /// A syscall exit during a window's re-run: puts back what the
    /// recording's run of that syscall left, instead of running it.
    func refeedSyscall() throws {
        guard var window = slice.window, let i = window.cursor, i < window.refeeds.count else { return }
        let r = window.refeeds[i]
        let machine = process.machine
        let regs = machine.registers
        guard regs.rax == r.call.number, regs.rip == r.call.returnTo else {
            throw RunStopped("the preemption re-run of thread \(process.current.tid) diverged: at its syscall \(i + 1) of \(window.refeeds.count) it made syscall \(regs.rax) at guest rip 0x\(String(regs.rip, radix: 16)), where the run it repeats made \(r.call.number) at 0x\(String(r.call.returnTo, radix: 16))")
        }
        process.memory.putFrames(r.frames, r.bytes)
        machine.registers = r.registers
        machine.fsBase = r.fsBase
        machine.gsBase = r.gsBase
        window.cursor = i + 1 < window.refeeds.count ? i + 1 : nil
        let pending = window.cursor == nil ? window.pending : nil
        if pending != nil { window.pending = nil }
        slice.window = window
        if let p = pending { try armCounter(at: p.rip, target: p.target, minimum: p.minimum) }
    }
}
