import KVMUser

/// gdb's register writes (`P`, `G`), the inverse of `RegisterFile.bytes`,
/// for a diversion (Diversion.swift): the bytes are little-endian at the
/// register's size, in `RegisterFile.layout`'s numbering.
extension RegisterFile {
    /// The flags a program may change, as Linux's ptrace lets a debugger
    /// (arch/x86/kernel/ptrace.c FLAG_MASK: CF PF AF ZF SF TF DF OF NT RF AC,
    /// without TF here: the stub's). IF, IOPL and the rest stay.
    static let writableFlags: UInt64 = 0x1 | 0x4 | 0x10 | 0x40 | 0x80 | 0x400 | 0x800 | 0x4000 | 0x10000 | 0x40000

    /// Writes register `n` into `s`; false when there is no such register,
    /// the size is wrong, or the value cannot be given (another segment
    /// selector, x87/SSE state not known for this thread).
    static func write(_ n: Int, _ value: [UInt8], into s: inout Snapshot) -> Bool {
        guard n >= 0, n < layout.count, value.count == layout[n].bits / 8 else { return false }
        func u(_ b: ArraySlice<UInt8>) -> UInt64 {
            b.enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
        }
        let v = u(value[...])
        switch n {
        case 0: s.registers.rax = v
        case 1: s.registers.rbx = v
        case 2: s.registers.rcx = v
        case 3: s.registers.rdx = v
        case 4: s.registers.rsi = v
        case 5: s.registers.rdi = v
        case 6: s.registers.rbp = v
        case 7: s.registers.rsp = v
        case 8: s.registers.r8 = v
        case 9: s.registers.r9 = v
        case 10: s.registers.r10 = v
        case 11: s.registers.r11 = v
        case 12: s.registers.r12 = v
        case 13: s.registers.r13 = v
        case 14: s.registers.r14 = v
        case 15: s.registers.r15 = v
        case 16: s.registers.rip = v
        case 17: s.registers.rflags = (s.registers.rflags & ~writableFlags) | (v & writableFlags)
        case 18: return v == UInt64(Layout.userCS)
        case 19: return v == UInt64(Layout.userDS)
        case 20...23: return v == 0
        case 57: break                    // orig_rax: no stop is inside a syscall, nothing to restart
        case 58: s.fsBase = v
        case 59: s.gsBase = v
        default:
            guard var x = s.xsave else { return false }
            func put(_ at: Int, _ bytes: Int) {
                for i in 0..<bytes { x[at + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(i))) }
            }
            switch n {
            case 24...31: x.replaceSubrange((32 + 16 * (n - 24))..<(32 + 16 * (n - 24) + 10), with: value)
            case 32: put(0, 2)                                   // fctrl
            case 33: put(2, 2)                                   // fstat
            case 34:
                // gdb's full tag word; FXSAVE keeps one "not empty" bit per register.
                var abridged: UInt8 = 0
                for physical in 0..<8 where (v >> (2 * UInt64(physical))) & 3 != 3 { abridged |= 1 << physical }
                x[4] = abridged
            case 35: put(12, 2)                                  // fiseg
            case 36: put(8, 4)                                   // fioff
            case 37: put(20, 2)                                  // foseg
            case 38: put(16, 4)                                  // fooff
            case 39: put(6, 2)                                   // fop
            case 40...55: x.replaceSubrange((160 + 16 * (n - 40))..<(160 + 16 * (n - 40) + 16), with: value)
            case 56: put(24, 4)                                  // mxcsr
            default: return false
            }
            s.xsave = x
        }
        return true
    }

    /// A `G` packet's hex: every register in order, as `g` sends them
    /// (`x`s for one gdb does not have leave it as it is). False when malformed.
    static func writeAll<S: StringProtocol>(_ hex: S, into s: inout Snapshot) -> Bool {
        var rest = Substring(hex)
        for n in 0..<layout.count {
            let digits = layout[n].bits / 4
            if rest.isEmpty { return true }         // gdb may send fewer
            guard rest.count >= digits else { return false }
            let field = rest.prefix(digits)
            rest = rest.dropFirst(digits)
            if field.allSatisfy({ $0 == "x" }) { continue }
            guard let bytes = Packet.bytes(fromHex: field) else { return false }
            if !write(n, bytes, into: &s) { return false }
        }
        return rest.isEmpty
    }
}
