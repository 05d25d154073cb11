import KVMUser

/// A stopped tracee's registers as ptrace shows them: struct
/// user_regs_struct (27 words) and the FXSAVE/XSAVE areas. The thread may
/// be the one its process's vCPU holds, or saved in its GuestThread.
struct TraceeRegisters {
    let process: Process
    let thread: GuestThread

    var onCPU: Bool { process.mm.loaded === thread }

    var registers: Registers {
        get { onCPU ? process.machine.registers : thread.registers }
        nonmutating set {
            if onCPU { process.machine.registers = newValue } else { thread.registers = newValue }
        }
    }
    var fsBase: UInt64 {
        get { onCPU ? process.machine.fsBase : thread.fsBase }
        nonmutating set { if onCPU { process.machine.fsBase = newValue } else { thread.fsBase = newValue } }
    }
    var gsBase: UInt64 {
        get { onCPU ? process.machine.gsBase : thread.gsBase }
        nonmutating set { if onCPU { process.machine.gsBase = newValue } else { thread.gsBase = newValue } }
    }

    /// The XSAVE image (its first 512 bytes are the FXSAVE layout of user_fpregs_struct).
    func extendedState() throws -> [UInt8] {
        if onCPU { return try process.machine.extendedState() }
        return thread.extendedState ?? [UInt8](repeating: 0, count: process.machine.extendedStateSize)
    }

    func setExtendedState(_ bytes: [UInt8]) throws {
        if onCPU { try process.machine.setExtendedState(bytes) } else { thread.extendedState = bytes }
    }

    static let count = 27
    static let size = count * 8
    /// Offsets of struct user (sys/user.h): the registers, then u_debugreg.
    static let debugRegisters: UInt64 = 848

    /// user_regs_struct, in its order.
    func words() -> [UInt64] {
        let r = registers
        let orig = thread.trace?.origRAX ?? UInt64.max
        return [r.r15, r.r14, r.r13, r.r12, r.rbp, r.rbx, r.r11, r.r10, r.r9, r.r8, r.rax, r.rcx, r.rdx, r.rsi, r.rdi,
                orig, r.rip, 0x33, r.rflags, r.rsp, 0x2b, fsBase, gsBase, 0, 0, 0, 0]
    }

    /// Sets one word of user_regs_struct as putreg does: segment selectors
    /// must stay the user ones, and only the flags user code may change move.
    func set(word index: Int, _ value: UInt64) throws(Errno) {
        var r = registers
        switch index {
        case 0: r.r15 = value
        case 1: r.r14 = value
        case 2: r.r13 = value
        case 3: r.r12 = value
        case 4: r.rbp = value
        case 5: r.rbx = value
        case 6: r.r11 = value
        case 7: r.r10 = value
        case 8: r.r9 = value
        case 9: r.r8 = value
        case 10: r.rax = value
        case 11: r.rcx = value
        case 12: r.rdx = value
        case 13: r.rsi = value
        case 14: r.rdi = value
        case 15: thread.trace?.origRAX = value
        case 16:
            guard value < GuestMemory.userLimit else { throw .io }
            r.rip = value
        case 17: guard value == 0x33 else { throw .io }
        case 18:
            let userFlags: UInt64 = 0x50dd5 | 0x100   // FIX_EFLAGS and TF
            r.rflags = (r.rflags & ~userFlags) | (value & userFlags)
        case 19: r.rsp = value
        case 20: guard value == 0x2b else { throw .io }
        case 21:
            guard value < GuestMemory.userLimit else { throw .perm }
            fsBase = value
        case 22:
            guard value < GuestMemory.userLimit else { throw .perm }
            gsBase = value
        case 23, 24, 25, 26: guard value == 0 else { throw .io }
        default: throw .io
        }
        registers = r
    }

    func set(words: [UInt64]) throws(Errno) {
        // Checks first, as putreg would refuse before changing anything.
        let before = (registers, fsBase, gsBase, thread.trace?.origRAX)
        do {
            for (i, w) in words.prefix(TraceeRegisters.count).enumerated() { try set(word: i, w) }
        } catch {
            registers = before.0; fsBase = before.1; gsBase = before.2; thread.trace?.origRAX = before.3 ?? UInt64.max
            throw error
        }
    }
}
