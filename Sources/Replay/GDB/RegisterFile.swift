import KVMUser

/// gdb's amd64 register numbering (the order of `TargetDescription`) and
/// the `g`/`p` encodings: each register little-endian hex at its size.
///
/// x87 and SSE state lives in the vCPU's XSAVE area, which `UserMachine`
/// does not expose yet: those registers are sent as unavailable (`xx`), and
/// gdb shows `<unavailable>` for them.
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

    /// The current value of register `n`, nil when not available.
    static func value(_ n: Int, machine: UserMachine) -> UInt64? {
        let r = machine.registers
        switch n {
        case 0: return r.rax
        case 1: return r.rbx
        case 2: return r.rcx
        case 3: return r.rdx
        case 4: return r.rsi
        case 5: return r.rdi
        case 6: return r.rbp
        case 7: return r.rsp
        case 8: return r.r8
        case 9: return r.r9
        case 10: return r.r10
        case 11: return r.r11
        case 12: return r.r12
        case 13: return r.r13
        case 14: return r.r14
        case 15: return r.r15
        case 16: return r.rip
        case 17: return r.rflags & 0xffff_ffff & ~0x100   // TF is the stub's, never the program's
        case 18: return UInt64(Layout.userCS)
        case 19: return UInt64(Layout.userDS)
        case 20...23: return 0
        case 57: return UInt64.max                         // orig_rax: never stopped inside a syscall
        case 58: return machine.fsBase
        case 59: return machine.gsBase
        default: return nil
        }
    }

    /// Register `n` as its `p` reply: hex, or `x`s when unavailable; nil when there is no such register.
    static func encode(_ n: Int, machine: UserMachine) -> String? {
        guard n >= 0, n < layout.count else { return nil }
        let bytes = layout[n].bits / 8
        guard let v = value(n, machine: machine) else { return String(repeating: "x", count: bytes * 2) }
        if bytes <= 8 { return Packet.littleEndianHex(v, bytes: bytes) }
        return Packet.littleEndianHex(v, bytes: 8) + String(repeating: "0", count: (bytes - 8) * 2)
    }

    /// The `g` reply: every register in order.
    static func encodeAll(machine: UserMachine) -> String {
        (0..<layout.count).map { encode($0, machine: machine)! }.joined()
    }
}
