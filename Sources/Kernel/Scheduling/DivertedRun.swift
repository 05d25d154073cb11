import CHost
import KVMUser

/// Running the guest outside the recording, for a debugger's diversion
/// (gdb's `call`, `print f(x)`): the vCPU runs the thread on it with no
/// events, no preemption and no signal delivery, and every syscall goes
/// back to the caller, which decides its result (the diversion's own rule,
/// docs/gdb.md). Nothing of the emulated kernel changes here; the caller
/// restores the guest's memory and registers afterwards.
extension ProcessRunner {
    /// Why `proceedDiverted` returned.
    public enum DivertedStop: Equatable {
        /// A SYSCALL: its number and arguments are in the registers, RIP past
        /// it. The caller sets RAX and runs again.
        case syscall
        /// #BP (RIP past the int3) or #DB, not one of detrec's own patches.
        case trap(GuestException)
        /// A fault the guest would get as this signal.
        case fault(FatalSignal, GuestException)
        /// `UserMachine.requestInterrupt` (gdb's interrupt byte).
        case interrupted
    }

    /// Runs the current thread until a syscall, a debugger trap, a fault or
    /// an interrupt. detrec's own int3 patches behave as in a normal run:
    /// cpuid is answered from the trace's CPU model, rdtsc reads the host's
    /// counter (unrecorded: the diversion is thrown away), and the int3 of
    /// a recorded preemption's hit counter is stepped over uncounted, so
    /// the slice's count is the same when the replay goes on.
    public func proceedDiverted() throws -> DivertedStop {
        let machine = process.machine
        var retries = 0
        var next: Exit?
        while true {
            let exit = try next ?? machine.run()
            next = nil
            switch exit {
            case .syscall:
                return .syscall
            case .interrupted:
                return .interrupted
            case .exception(let e):
                if case .mapped = DemandFault.handleFault(process, e, rip: machine.registers.rip) { continue }
                if WriteXorExecute.handleFault(process, e) { continue }
                if e.vector == GuestException.pageFault, retries < 4, let code = e.errorCode,
                   let p = process.memory.protection(at: e.address) {
                    // A stale translation (the page allows the access): retry.
                    let write = code & 2 != 0, fetch = code & 16 != 0
                    if p.contains(.read) && (!write || p.contains(.write)) && (!fetch || p.contains(.execute)) {
                        retries += 1
                        process.memory.translationsChanged = true
                        continue
                    }
                }
                retries = 0
                if let (site, kind) = PatchedInstructions.site(process, e) {
                    if kind == .cpuid {
                        PatchedInstructions.emulateCPUID(process, at: site)
                    } else {
                        var regs = machine.registers
                        let tsc = chost_rdtsc()
                        regs.rax = tsc & 0xffff_ffff
                        regs.rdx = tsc >> 32
                        if kind == .rdtscp { regs.rcx = 0 }
                        regs.rip = site + kind.length
                        machine.registers = regs
                    }
                    continue
                }
                if e.vector == GuestException.breakpoint, let c = slice.counter, e.rip == c.rip &+ 1,
                   process.memory.patches[c.rip] != nil, process.memory.patchHolders(c.rip) == 1 {
                    // The step's own #DB is ours; anything else the instruction did is the guest's.
                    // (unless the debugger is single-stepping: then the #DB ends its step).
                    let debuggerStepping = machine.registers.rflags & 0x100 != 0
                    let stepped = try stepOverCounter(at: c.rip)
                    if case .exception(let d) = stepped, d.vector == GuestException.debug, !debuggerStepping { continue }
                    next = stepped
                    continue
                }
                if e.vector == GuestException.breakpoint || e.vector == GuestException.debug { return .trap(e) }
                return .fault(Signals.forException(e, page: process.faultedPage(e)), e)
            }
        }
    }

    /// One instruction at `rip` with the counter's int3 out, uncounted;
    /// how it ended.
    private func stepOverCounter(at rip: UInt64) throws -> Exit {
        let machine = process.machine
        machine.registers.rip = rip
        process.memory.liftPatch(rip)
        defer { process.memory.relayPatch(rip) }
        let tf: UInt64 = 0x100
        let hadTF = machine.registers.rflags & tf != 0
        machine.registers.rflags |= tf
        defer { if !hadTF { machine.registers.rflags &= ~tf } }
        return try machine.run()
    }
}
