/// One classic BPF instruction (struct sock_filter, 8 bytes).
public struct BPFInstruction: Equatable, Sendable {
    public var code: UInt16
    public var jt: UInt8
    public var jf: UInt8
    public var k: UInt32

    public init(code: UInt16, jt: UInt8 = 0, jf: UInt8 = 0, k: UInt32 = 0) {
        self.code = code; self.jt = jt; self.jf = jf; self.k = k
    }

    /// Decodes `count` instructions from the guest's bytes (little-endian).
    static func decode(_ bytes: [UInt8]) -> [BPFInstruction] {
        stride(from: 0, to: bytes.count - bytes.count % 8, by: 8).map { (i: Int) -> BPFInstruction in
            let code = UInt16(bytes[i]) | UInt16(bytes[i + 1]) << 8
            let k = Bytes.u32(bytes, at: i + 4)
            return BPFInstruction(code: code, jt: bytes[i + 2], jf: bytes[i + 3], k: k)
        }
    }
}

/// What a seccomp filter sees of a syscall (struct seccomp_data, 64 bytes).
public struct SeccompData: Equatable, Sendable {
    public var nr: Int32
    public var arch: UInt32 = SeccompData.AUDIT_ARCH_X86_64
    public var instructionPointer: UInt64
    public var args: [UInt64]

    public static let AUDIT_ARCH_X86_64: UInt32 = 0xc000_003e
    public static let size: UInt32 = 64

    public init(nr: Int32, instructionPointer: UInt64, args: [UInt64]) {
        self.nr = nr; self.instructionPointer = instructionPointer
        self.args = args + [UInt64](repeating: 0, count: max(0, 6 - args.count))
    }

    /// The 32-bit word at `offset` (checked to be aligned and inside: the
    /// verifier allows no other load), in the machine's byte order as
    /// seccomp loads it.
    func word(at offset: UInt32) -> UInt32 {
        switch offset {
        case 0: return UInt32(bitPattern: nr)
        case 4: return arch
        case 8: return UInt32(truncatingIfNeeded: instructionPointer)
        case 12: return UInt32(truncatingIfNeeded: instructionPointer >> 32)
        case 16..<64:
            let value = args[Int(offset - 16) / 8]
            return offset % 8 == 0 ? UInt32(truncatingIfNeeded: value) : UInt32(truncatingIfNeeded: value >> 32)
        default: return 0
        }
    }
}

/// A seccomp filter program: classic BPF checked as Linux checks it
/// (net/core/filter.c's bpf_check_classic, then kernel/seccomp.c's
/// seccomp_check_filter), and run over `SeccompData` as the kernel runs
/// it. A program that passes the checks only jumps forward, so a run ends
/// within its length.
public struct SeccompProgram: Equatable, Sendable {
    public let instructions: [BPFInstruction]

    // Instruction classes, sizes, modes and operations (linux/bpf_common.h).
    static let LD: UInt16 = 0x00, LDX: UInt16 = 0x01, ST: UInt16 = 0x02, STX: UInt16 = 0x03
    static let ALU: UInt16 = 0x04, JMP: UInt16 = 0x05, RET: UInt16 = 0x06, MISC: UInt16 = 0x07
    static let W: UInt16 = 0x00, IMM: UInt16 = 0x00, ABS: UInt16 = 0x20, MEM: UInt16 = 0x60, LEN: UInt16 = 0x80
    static let K: UInt16 = 0x00, X: UInt16 = 0x08, A: UInt16 = 0x10
    static let ADD: UInt16 = 0x00, SUB: UInt16 = 0x10, MUL: UInt16 = 0x20, DIV: UInt16 = 0x30, OR: UInt16 = 0x40
    static let AND: UInt16 = 0x50, LSH: UInt16 = 0x60, RSH: UInt16 = 0x70, NEG: UInt16 = 0x80, XOR: UInt16 = 0xa0
    static let JA: UInt16 = 0x00, JEQ: UInt16 = 0x10, JGT: UInt16 = 0x20, JGE: UInt16 = 0x30, JSET: UInt16 = 0x40
    static let TAX: UInt16 = 0x00, TXA: UInt16 = 0x80
    /// BPF_MAXINSNS and BPF_MEMWORDS.
    public static let maxInstructions = 4096
    static let memoryWords: UInt32 = 16

    /// The codes seccomp accepts (seccomp_check_filter's list; loads of
    /// packet data other than aligned words of seccomp_data are not there).
    static let allowed: Set<UInt16> = {
        var s: Set<UInt16> = [LD | W | ABS, LD | W | LEN, LDX | W | LEN, RET | K, RET | A,
                              ALU | NEG, LD | IMM, LDX | IMM, MISC | TAX, MISC | TXA,
                              LD | MEM, LDX | MEM, ST, STX, JMP | JA]
        for op in [ADD, SUB, MUL, DIV, AND, OR, XOR, LSH, RSH] { s.insert(ALU | op | K); s.insert(ALU | op | X) }
        for op in [JEQ, JGE, JGT, JSET] { s.insert(JMP | op | K); s.insert(JMP | op | X) }
        return s
    }()

    static func isConditionalJump(_ code: UInt16) -> Bool {
        code & 0x07 == JMP && code != JMP | JA
    }

    /// Checks a program: EINVAL for anything Linux's verifier refuses.
    public static func check(_ program: [BPFInstruction]) throws(Errno) -> SeccompProgram {
        let n = program.count
        guard n > 0, n <= maxInstructions else { throw .inval }
        for (pc, i) in program.enumerated() {
            guard allowed.contains(i.code) else { throw .inval }
            switch i.code {
            case LD | W | ABS:
                guard i.k < SeccompData.size, i.k & 3 == 0 else { throw .inval }
            case ALU | DIV | K:
                guard i.k != 0 else { throw .inval }
            case ALU | LSH | K, ALU | RSH | K:
                guard i.k < 32 else { throw .inval }
            case LD | MEM, LDX | MEM, ST, STX:
                guard i.k < memoryWords else { throw .inval }
            case JMP | JA:
                guard UInt64(i.k) < UInt64(n - pc - 1) else { throw .inval }
            case let code where isConditionalJump(code):
                guard pc + Int(i.jt) + 1 < n, pc + Int(i.jf) + 1 < n else { throw .inval }
            default:
                break
            }
        }
        guard let last = program.last, last.code == RET | K || last.code == RET | A else { throw .inval }
        try checkLoadsAndStores(program)
        return SeccompProgram(instructions: program)
    }

    /// Linux's check_load_and_stores: a memory word must be stored on
    /// every path before it is loaded.
    static func checkLoadsAndStores(_ program: [BPFInstruction]) throws(Errno) {
        var masks = [UInt16](repeating: 0xffff, count: program.count)
        var valid: UInt16 = 0
        for (pc, i) in program.enumerated() {
            valid &= masks[pc]
            switch i.code {
            case ST, STX:
                valid |= 1 << UInt16(i.k)
            case LD | MEM, LDX | MEM:
                guard valid & (1 << UInt16(i.k)) != 0 else { throw .inval }
            case JMP | JA:
                masks[pc + 1 + Int(i.k)] &= valid
                valid = 0xffff
            case let code where isConditionalJump(code):
                masks[pc + 1 + Int(i.jt)] &= valid
                masks[pc + 1 + Int(i.jf)] &= valid
                valid = 0xffff
            default:
                break
            }
        }
    }

    /// Runs the program: its return value (SECCOMP_RET_*). Division by a
    /// zero X returns 0, as the kernel's translation of classic BPF does.
    public func run(_ data: SeccompData) -> UInt32 {
        var a: UInt32 = 0, x: UInt32 = 0
        var mem = [UInt32](repeating: 0, count: Int(SeccompProgram.memoryWords))
        var pc = 0
        let p = instructions
        while pc < p.count {
            let i = p[pc]
            pc += 1
            let s = SeccompProgram.self
            switch i.code {
            case s.LD | s.W | s.ABS: a = data.word(at: i.k)
            case s.LD | s.W | s.LEN: a = SeccompData.size
            case s.LDX | s.W | s.LEN: x = SeccompData.size
            case s.LD | s.IMM: a = i.k
            case s.LDX | s.IMM: x = i.k
            case s.LD | s.MEM: a = mem[Int(i.k & 15)]
            case s.LDX | s.MEM: x = mem[Int(i.k & 15)]
            case s.ST: mem[Int(i.k & 15)] = a
            case s.STX: mem[Int(i.k & 15)] = x
            case s.MISC | s.TAX: x = a
            case s.MISC | s.TXA: a = x
            case s.RET | s.K: return i.k
            case s.RET | s.A: return a
            case s.ALU | s.NEG: a = 0 &- a
            case s.JMP | s.JA: pc += Int(i.k)
            default:
                let operand = i.code & s.X != 0 ? x : i.k
                if i.code & 0x07 == s.ALU {
                    switch i.code & 0xf0 {
                    case s.ADD: a = a &+ operand
                    case s.SUB: a = a &- operand
                    case s.MUL: a = a &* operand
                    case s.DIV:
                        guard operand != 0 else { return 0 }
                        a /= operand
                    case s.OR: a |= operand
                    case s.AND: a &= operand
                    case s.XOR: a ^= operand
                    case s.LSH: a = a << (operand & 31)
                    case s.RSH: a = a >> (operand & 31)
                    default: return 0
                    }
                } else if i.code & 0x07 == s.JMP {
                    let taken: Bool
                    switch i.code & 0xf0 {
                    case s.JEQ: taken = a == operand
                    case s.JGT: taken = a > operand
                    case s.JGE: taken = a >= operand
                    case s.JSET: taken = a & operand != 0
                    default: return 0
                    }
                    pc += Int(taken ? i.jt : i.jf)
                } else {
                    return 0    // not reachable: the check allows no other code
                }
            }
        }
        return 0
    }
}
