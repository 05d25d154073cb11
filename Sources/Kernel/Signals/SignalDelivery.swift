import KVMUser

/// A decoded struct sigaction.
public struct SignalAction: Equatable {
    public var handler: UInt64
    public var flags: UInt64
    public var restorer: UInt64
    public var mask: UInt64

    public init(_ raw: [UInt8]) {
        handler = Bytes.u64(raw, at: 0)
        flags = Bytes.u64(raw, at: 8)
        restorer = Bytes.u64(raw, at: 16)
        mask = Bytes.u64(raw, at: 24)
    }

    public static let SIG_DFL: UInt64 = 0, SIG_IGN: UInt64 = 1
    public static let SA_SIGINFO: UInt64 = 4, SA_ONSTACK: UInt64 = 0x0800_0000, SA_RESTART: UInt64 = 0x1000_0000
    public static let SA_NODEFER: UInt64 = 0x4000_0000, SA_RESETHAND: UInt64 = 0x8000_0000, SA_RESTORER: UInt64 = 0x0400_0000
}

/// Generating and delivering signals as Linux's kernel/signal.c and
/// arch/x86/kernel/signal.c do: pending sets, default actions, and the
/// rt_sigframe (siginfo, ucontext with mcontext, the XSAVE area, the
/// restorer) that handlers, siglongjmp and runtimes rely on. Everything here
/// is computed from guest state, so record and replay do it identically.
public enum SignalDelivery {
    static let ignoredByDefault: Set<Int32> = [17, 18, 23, 28]   // CHLD CONT URG WINCH
    static let stopByDefault: Set<Int32> = [19, 20, 21, 22]      // STOP TSTP TTIN TTOU
    static let unblockable = SignalState.bit(9) | SignalState.bit(19)

    /// The 128-byte siginfo of a signal.
    public static func siginfo(signal: Int32, code: Int32, address: UInt64 = 0, pid: Int32 = 0, uid: UInt32 = 0) -> [UInt8] {
        var info = Bytes.i32(signal) + Bytes.i32(0) + Bytes.i32(code) + Bytes.i32(0)
        if address != 0 || [4, 5, 7, 8, 11].contains(signal) && code > 0 {
            info += Bytes.u64(address)
        } else {
            info += Bytes.i32(pid) + Bytes.u32(uid)
        }
        return info + [UInt8](repeating: 0, count: 128 - info.count)
    }

    /// Makes a signal pending (kill, tgkill, raise), for `thread` alone or
    /// for the whole process, unless its disposition discards it at once.
    /// As Linux: a blocked signal is kept even when ignored (sigwait may
    /// take it), a second standard signal merges into the pending one, and
    /// real-time signals queue. SIGCONT and the stop signals act on
    /// arrival (`JobControl.arrived`). A POSIX timer's expiry
    /// (`PosixTimer.encoded`, from `dueTimerSignals`) is routed to its
    /// timer, which ignores `info` and builds its own SI_TIMER siginfo.
    public static func generate(_ process: Process, signal: Int32, info: [UInt8], to thread: GuestThread? = nil) {
        if signal > 64 {
            PosixTimerSyscalls.expired(process, encoded: signal)
            return
        }
        JobControl.arrived(process, signal: signal)
        let a = process.signals.action(signal)
        let blocked = process.signalMask(of: thread ?? process.current) & SignalState.bit(signal) != 0
        // A tracer sees even ignored signals (a signal-delivery-stop): they stay pending for a traced thread.
        let traced = thread.map { $0.trace != nil } ?? process.threads.contains { $0.trace != nil }
        if signal != 9 && signal != 19 && !blocked && !traced {
            if a.handler == SignalAction.SIG_IGN { return }
            if a.handler == SignalAction.SIG_DFL && ignoredByDefault.contains(signal) { return }
        }
        if JobControl.stopsOnArrival(process, signal: signal, thread: thread) {
            JobControl.stop(process, signal: signal)
            return
        }
        if let thread {
            thread.pending.add(signal, info: info)
        } else {
            process.signals.shared.add(signal, info: info)
        }
        SignalFD.signalsChanged(process)
    }

    /// Takes the lowest pending signal in `set` off the current thread's
    /// pending set, or else the process's (the next queued instance of a
    /// real-time signal stays), with its siginfo. A POSIX timer's siginfo
    /// gets its overrun count here, as Linux does when it is dequeued.
    public static func dequeue(_ process: Process, from set: UInt64) -> (signal: Int32, info: [UInt8])? {
        guard case (let signal, var info)? = process.current.pending.take(from: set) ?? process.signals.shared.take(from: set) else {
            return nil
        }
        PosixTimerSyscalls.dequeued(process, signal: signal, info: &info)
        SignalFD.signalsChanged(process)
        return (signal, info)
    }

    /// Whether `signal` kills `process` as soon as it arrives: left at its
    /// default action, which terminates, and not blocked.
    static func terminatesOnArrival(_ process: Process, signal: Int32) -> Bool {
        guard signal != 9 else { return true }
        let a = process.signals.action(signal)
        return a.handler == SignalAction.SIG_DFL && !ignoredByDefault.contains(signal) && !stopByDefault.contains(signal)
            && process.signalMask(of: process.current) & SignalState.bit(signal) == 0
    }

    /// Delivers every pending signal the mask lets through, on the way back
    /// to user code. Returns the signal that ends the process, if one does.
    /// A mask that rt_sigsuspend replaced is restored afterwards, unless a
    /// handler's frame took it (`GuestThread.savedSignalMask`).
    public static func deliverPending(_ process: Process) throws -> FatalSignal? {
        defer {
            if let saved = process.current.savedSignalMask {
                process.signals.mask = saved
                process.current.savedSignalMask = nil
            }
        }
        while true {
            guard let (signal, info) = dequeue(process, from: ~process.signals.mask | unblockable) else { return nil }
            let a = process.signals.action(signal)
            if a.handler == SignalAction.SIG_IGN && signal != 9 { continue }
            if a.handler == SignalAction.SIG_DFL || signal == 9 {
                if ignoredByDefault.contains(signal) { continue }
                if stopByDefault.contains(signal) {
                    // The process stops here; the run loop parks it until a SIGCONT.
                    JobControl.stop(process, signal: signal)
                    return nil
                }
                return FatalSignal(signal: signal, code: Int32(bitPattern: Bytes.u32(info, at: 8)),
                                   rip: process.machine.registers.rip, address: 0)
            }
            if let fatal = try setupFrame(process, signal: signal, info: info, action: a, fault: nil) { return fatal }
        }
    }

    /// A fault: runs the handler when there is one and the signal is not
    /// blocked; otherwise the process dies of it (Linux's force_sig).
    /// Returns the signal that ends the process, nil when a handler runs.
    public static func deliverFault(_ process: Process, _ fatal: FatalSignal, exception: GuestException) throws -> FatalSignal? {
        let a = process.signals.action(fatal.signal)
        let blocked = process.signals.mask & SignalState.bit(fatal.signal) != 0
        guard a.handler > SignalAction.SIG_IGN, !blocked else { return fatal }
        let info = siginfo(signal: fatal.signal, code: fatal.code, address: fatal.address)
        return try setupFrame(process, signal: fatal.signal, info: info, action: a, fault: exception)
    }

    static let frameSize: UInt64 = 440
    static let ucontextOffset: UInt64 = 8
    static let mcontextOffset: UInt64 = 48
    static let sigmaskOffset: UInt64 = 304
    static let siginfoOffset: UInt64 = 312
    static let fpMagic1: UInt32 = 0x4650_5853, fpMagic2: UInt32 = 0x4650_5845

    /// Builds the rt_sigframe on the user stack (or the alternate stack) and
    /// points the registers at the handler. A frame that cannot be written
    /// kills the process with SIGSEGV, as on Linux.
    static func setupFrame(_ process: Process, signal: Int32, info: [UInt8], action: SignalAction,
                           fault: GuestException?) throws -> FatalSignal? {
        let machine = process.machine
        let memory = process.memory
        var r = machine.registers
        let alt = process.signals.altStack
        let altSP = Bytes.u64(alt, at: 0), altFlags = Bytes.u32(alt, at: 8), altSize = Bytes.u64(alt, at: 16)
        let onAlt = altSize > 0 && r.rsp > altSP && r.rsp <= altSP &+ altSize
        var sp: UInt64
        if action.flags & SignalAction.SA_ONSTACK != 0 && altFlags & 2 == 0 && altSize > 0 && !onAlt {
            sp = altSP &+ altSize
        } else {
            sp = r.rsp &- 128     // the red zone
        }
        let xsize = machine.extendedStateSize
        sp = (sp &- UInt64(xsize + 4)) & ~63
        let fpstate = sp
        sp = ((sp &- frameSize) & ~15) &- 8
        let frame = sp

        var xsave = Array(try machine.extendedState().prefix(xsize))
        // fx_sw_bytes (arch/x86/include/uapi/asm/sigcontext.h): says the
        // area is an XSAVE image, its size and features.
        func put32(_ at: Int, _ v: UInt32) { for i in 0..<4 { xsave[at + i] = UInt8((v >> (8 * UInt32(i))) & 0xff) } }
        func put64(_ at: Int, _ v: UInt64) { for i in 0..<8 { xsave[at + i] = UInt8((v >> (8 * UInt64(i))) & 0xff) } }
        put32(464, fpMagic1)
        put32(468, UInt32(xsize + 4))
        put64(472, machine.cpuid.xcr0)
        put32(480, UInt32(xsize))
        // rt_sigsuspend's frame saves the mask from before the call; the
        // handler runs with the mask in force (the suspend mask) added to.
        let oldMask = process.current.savedSignalMask ?? process.signals.mask
        let runningMask = process.signals.mask
        process.current.savedSignalMask = nil

        var f = Bytes.u64(action.restorer)
        f += Bytes.u64(7)                                   // UC_FP_XSTATE | UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS
        f += Bytes.u64(0)                                   // uc_link
        let stackFlags: UInt32 = altSize == 0 || altFlags & 2 != 0 ? 2 : (onAlt ? 1 : 0)
        f += Bytes.u64(altSP) + Bytes.u32(stackFlags) + Bytes.u32(0) + Bytes.u64(altSize)
        for v in [r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15, r.rdi, r.rsi, r.rbp, r.rbx,
                  r.rdx, r.rax, r.rcx, r.rsp, r.rip, r.rflags] { f += Bytes.u64(v) }
        f += [0x33, 0, 0, 0, 0, 0, 0x2b, 0]                 // cs, gs, fs, ss
        f += Bytes.u64(fault?.errorCode ?? 0)
        f += Bytes.u64(UInt64(fault?.vector ?? 0))
        f += Bytes.u64(oldMask)
        f += Bytes.u64(fault?.vector == GuestException.pageFault ? fault?.address ?? 0 : 0)
        f += Bytes.u64(fpstate)
        f += [UInt8](repeating: 0, count: 64)               // reserved1
        f += Bytes.u64(oldMask)                             // uc_sigmask
        f += info
        do {
            try memory.write(fpstate, xsave + Bytes.u32(fpMagic2))
            try memory.write(frame, f)
        } catch {
            return FatalSignal(signal: Signals.SIGSEGV, code: Signals.SI_KERNEL, rip: r.rip, address: 0)
        }
        r.rdi = UInt64(signal)
        r.rsi = frame + siginfoOffset
        r.rdx = frame + ucontextOffset
        r.rax = 0
        r.rip = action.handler
        r.rsp = frame
        r.rflags &= ~UInt64(0x400 | 0x100 | 0x10000)        // DF, TF, RF
        machine.registers = r
        var mask = runningMask | action.mask
        if action.flags & SignalAction.SA_NODEFER == 0 { mask |= SignalState.bit(signal) }
        process.signals.mask = mask & ~unblockable
        if action.flags & SignalAction.SA_RESETHAND != 0 {
            process.signals.actions[signal] = nil
        }
        return nil
    }

    /// rt_sigreturn: restores the registers, mask, alternate stack and XSAVE
    /// state from the frame the handler returned through. Returns RAX.
    public static func sigreturn(_ process: Process) throws -> Int64 {
        let machine = process.machine
        let frame = machine.registers.rsp &- 8
        let f: [UInt8]
        do { f = try process.memory.read(frame, count: Int(frameSize)) } catch {
            throw SignalFrameUnreadable(rip: machine.registers.rip)
        }
        func reg(_ i: Int) -> UInt64 { Bytes.u64(f, at: Int(mcontextOffset) + 8 * i) }
        var r = machine.registers
        r.r8 = reg(0); r.r9 = reg(1); r.r10 = reg(2); r.r11 = reg(3)
        r.r12 = reg(4); r.r13 = reg(5); r.r14 = reg(6); r.r15 = reg(7)
        r.rdi = reg(8); r.rsi = reg(9); r.rbp = reg(10); r.rbx = reg(11)
        r.rdx = reg(12); r.rax = reg(13); r.rcx = reg(14); r.rsp = reg(15); r.rip = reg(16)
        // Only the flags user code may change (Linux's FIX_EFLAGS).
        let userFlags: UInt64 = 0x50dd5
        r.rflags = (r.rflags & ~userFlags) | (reg(17) & userFlags)
        machine.registers = r
        process.signals.mask = Bytes.u64(f, at: Int(sigmaskOffset)) & ~unblockable
        let altSP = Bytes.u64(f, at: 24), altFlags = Bytes.u32(f, at: 32), altSize = Bytes.u64(f, at: 40)
        process.signals.altStack = Bytes.u64(altSP) + Bytes.u32(altFlags & ~1) + Bytes.u32(0) + Bytes.u64(altSize)
        let fpstate = Bytes.u64(f, at: Int(mcontextOffset) + 184)
        if fpstate != 0 {
            let xsize = machine.extendedStateSize
            if var xsave = try? process.memory.read(fpstate, count: xsize) {
                for i in 464..<512 { xsave[i] = 0 }         // software bytes are not hardware state
                try machine.setExtendedState(xsave)
            }
        }
        return Int64(bitPattern: r.rax)
    }
}

/// rt_sigreturn found no readable frame: Linux kills the process with SIGSEGV.
public struct SignalFrameUnreadable: Error {
    public let rip: UInt64
}
