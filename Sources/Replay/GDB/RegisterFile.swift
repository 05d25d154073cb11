import Kernel
import KVMUser

/// gdb's amd64 register numbering (the order of `TargetDescription`) and
/// the `g`/`p` encodings: each register little-endian hex at its size.
enum RegisterFile {
    enum Feature { case core, sse, linux, segments }

    struct Register {
        var name: String
        var bits: Int
        var type: String
        var group: String?
        var feature: Feature

        var xml: String {
            let n = RegisterFile.layout.firstIndex { $0.name == name }!
            return "    <reg name=\"\(name)\" bitsize=\"\(bits)\" type=\"\(type)\" regnum=\"\(n)\"" +
                (group.map { " group=\"\($0)\"" } ?? "") + "/>"
        }
    }

    static let layout: [Register] = {
        var r: [Register] = []
        func add(_ name: String, _ bits: Int, _ type: String, _ group: String? = nil, _ f: Feature = .core) {
            r.append(Register(name: name, bits: bits, type: type, group: group, feature: f))
        }
        for n in ["rax", "rbx", "rcx", "rdx", "rsi", "rdi"] { add(n, 64, "int64") }
        add("rbp", 64, "data_ptr")
        add("rsp", 64, "data_ptr")
        for i in 8...15 { add("r\(i)", 64, "int64") }
        add("rip", 64, "code_ptr")
        add("eflags", 32, "i386_eflags")
        for n in ["cs", "ss", "ds", "es", "fs", "gs"] { add(n, 32, "int32") }
        for i in 0...7 { add("st\(i)", 80, "i387_ext") }
        for n in ["fctrl", "fstat", "ftag", "fiseg", "fioff", "foseg", "fooff", "fop"] { add(n, 32, "int", "float") }
        for i in 0...15 { add("xmm\(i)", 128, "vec128", nil, .sse) }
        add("mxcsr", 32, "i386_mxcsr", "vector", .sse)
        add("orig_rax", 64, "int", nil, .linux)
        add("fs_base", 64, "int", nil, .segments)
        add("gs_base", 64, "int", nil, .segments)
        return r
    }()

    /// One thread's registers as gdb asks for them: the general ones, and
    /// the x87/SSE state in the XSAVE layout (its legacy FXSAVE part), when
    /// known (the thread on the vCPU; other threads' are kept by the kernel
    /// emulation where the stub cannot see them).
    struct Snapshot {
        var registers: Registers
        var fsBase: UInt64
        var gsBase: UInt64
        var xsave: [UInt8]?

        /// The thread on the vCPU.
        init(machine: UserMachine) {
            registers = machine.registers
            fsBase = machine.fsBase
            gsBase = machine.gsBase
            xsave = try? machine.extendedState()
            if let x = xsave, x.count < 512 { xsave = nil }
        }

        /// A thread parked off the vCPU.
        init(thread: GuestThread) {
            registers = thread.registers
            fsBase = thread.fsBase
            gsBase = thread.gsBase
            xsave = nil
        }
    }

    private static func le(_ v: UInt64, _ bytes: Int) -> [UInt8] {
        (0..<bytes).map { UInt8(truncatingIfNeeded: v >> (8 * UInt64($0))) }
    }

    private static func u16(_ x: [UInt8], _ at: Int) -> UInt16 { UInt16(x[at]) | UInt16(x[at + 1]) << 8 }
    private static func u32(_ x: [UInt8], _ at: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(x[at + $1]) << (8 * UInt32($1)) } }
    private static func u64(_ x: [UInt8], _ at: Int) -> UInt64 { (0..<8).reduce(0) { $0 | UInt64(x[at + $1]) << (8 * UInt64($1)) } }

    /// Register `n`'s bytes (little-endian, at its size); nil when unavailable.
    static func bytes(_ n: Int, _ s: Snapshot) -> [UInt8]? {
        let r = s.registers
        let general: [UInt64] = [r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp, r.rsp,
                                 r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15, r.rip]
        switch n {
        case 0...16: return le(general[n], 8)
        case 17: return le(r.rflags & ~0x100, 4)             // TF is the stub's, never the program's
        case 18: return le(UInt64(Layout.userCS), 4)
        case 19: return le(UInt64(Layout.userDS), 4)
        case 20...23: return le(0, 4)
        case 57: return le(UInt64.max, 8)                     // orig_rax: a stop is never inside a syscall
        case 58: return le(s.fsBase, 8)
        case 59: return le(s.gsBase, 8)
        default: break
        }
        // x87 and SSE, from the FXSAVE image (Intel SDM vol. 1, 10.5.1), as gdb's i387_supply_fxsave reads it.
        guard let x = s.xsave else { return nil }
        switch n {
        case 24...31: return Array(x[(32 + 16 * (n - 24))..<(32 + 16 * (n - 24) + 10)])
        case 32: return le(UInt64(u16(x, 0)), 4)                                // fctrl
        case 33: return le(UInt64(u16(x, 2)), 4)                                // fstat
        case 34: return le(UInt64(fullTagWord(x)), 4)                           // ftag
        case 35: return le(UInt64(u16(x, 12)), 4)                               // fiseg
        case 36: return le(UInt64(u32(x, 8)), 4)                                // fioff
        case 37: return le(UInt64(u16(x, 20)), 4)                               // foseg
        case 38: return le(UInt64(u32(x, 16)), 4)                               // fooff
        case 39: return le(UInt64(u16(x, 6) & 0x7ff), 4)                        // fop
        case 40...55: return Array(x[(160 + 16 * (n - 40))..<(160 + 16 * (n - 40) + 16)])
        case 56: return le(UInt64(u32(x, 24)), 4)                               // mxcsr
        default: return nil
        }
    }

    /// FXSAVE keeps one "not empty" bit per physical x87 register; gdb wants
    /// the full two-bit tags (valid, zero, special, empty).
    static func fullTagWord(_ x: [UInt8]) -> UInt16 {
        let top = Int(u16(x, 2) >> 11) & 7
        var tags: UInt16 = 0
        for physical in 0..<8 {
            var tag: UInt16 = 3
            if x[4] & (1 << physical) != 0 {
                let st = 32 + 16 * ((physical - top + 8) % 8)
                let exponent = u16(x, st + 8) & 0x7fff
                let mantissa = u64(x, st)
                if exponent == 0x7fff {
                    tag = 2
                } else if exponent == 0 {
                    tag = mantissa == 0 ? 1 : 2
                } else {
                    tag = mantissa >> 63 == 1 ? 0 : 2
                }
            }
            tags |= tag << (2 * UInt16(physical))
        }
        return tags
    }

    /// Register `n` as its `p` reply: hex, or `x`s when unavailable; nil when there is no such register.
    static func encode(_ n: Int, _ s: Snapshot) -> String? {
        guard n >= 0, n < layout.count else { return nil }
        guard let b = bytes(n, s) else { return String(repeating: "x", count: layout[n].bits / 4) }
        return Packet.hex(b)
    }

    /// The `g` reply: every register in order.
    static func encodeAll(_ s: Snapshot) -> String {
        (0..<layout.count).map { encode($0, s)! }.joined()
    }
}
