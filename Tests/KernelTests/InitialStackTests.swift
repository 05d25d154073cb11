import KVMUser
import Testing
@testable import Kernel

/// The stack a program starts with, read back from guest memory as the
/// program's _start would: argc, argv[], NULL, envp[], NULL, auxv pairs
/// ending in AT_NULL, and the strings and AT_RANDOM bytes they point at.
@Suite struct InitialStackTests {
    static let top: UInt64 = 0x7ff0_0000_0000
    static let size: UInt64 = 0x10_0000

    struct Layout {
        var sp: UInt64
        var argc: UInt64
        var argv: [String]
        var envp: [String]
        var auxv: [(UInt64, UInt64)]
        var argvPointers: [UInt64]
    }

    func build(_ info: StartupInfo, auxv: [(UInt64, UInt64)] = [(6, 4096), (9, 0x401000)]) throws -> (Kernel.Process, Layout, [UInt8]) {
        let p = try makeProcess()
        try p.map(Mapping(start: Self.top - Self.size, end: Self.top, protection: .rw, name: "[stack]"))
        let built = try InitialStack.build(memory: p.memory, top: Self.top, info: info, auxv: auxv)
        let m = p.memory
        var at = built.sp
        func word() throws -> UInt64 {
            defer { at += 8 }
            return try m.readValue(at, as: UInt64.self)
        }
        func string(_ address: UInt64) throws -> String {
            String(decoding: try m.readCString(address, limit: 1 << 16), as: UTF8.self)
        }
        let argc = try word()
        var argvPointers: [UInt64] = []
        for _ in 0..<argc { argvPointers.append(try word()) }
        let argvEnd = try word()
        #expect(argvEnd == 0, "argv is not NULL-terminated")
        var envPointers: [UInt64] = []
        while true {
            let w = try word()
            if w == 0 { break }
            envPointers.append(w)
            guard envPointers.count < 10_000 else { break }
        }
        var vector: [(UInt64, UInt64)] = []
        while true {
            let key = try word(), value = try word()
            vector.append((key, value))
            if key == 0 || vector.count > 100 { break }
        }
        let layout = Layout(sp: built.sp, argc: argc,
                            argv: try argvPointers.map(string), envp: try envPointers.map(string),
                            auxv: vector, argvPointers: argvPointers)
        return (p, layout, built.auxv)
    }

    func info(argv: [String] = ["/bin/prog", "first", "second arg"], envp: [String] = ["A=1", "PATH=/usr/bin", "EMPTY="],
              random: [UInt8] = (0..<16).map { UInt8($0 * 17) }) -> StartupInfo {
        StartupInfo(argv: argv, envp: envp, execPath: "./prog", exePath: "/work/prog", atRandom: random,
                    uid: 1000, euid: 1000, gid: 100, egid: 100)
    }

    func value(_ auxv: [(UInt64, UInt64)], _ key: UInt64) -> UInt64? { auxv.first { $0.0 == key }?.1 }

    @Test func argcArgvEnvp() throws {
        let i = info()
        let (_, l, _) = try build(i)
        #expect(l.sp % 16 == 0, "the ABI wants rsp 16-byte aligned at _start")
        #expect(l.sp < Self.top && l.sp > Self.top - Self.size)
        #expect(l.argc == 3)
        #expect(l.argv == i.argv)
        #expect(l.envp == i.envp)
        // The strings live above the vectors, below the top.
        for p in l.argvPointers { #expect(p > l.sp && p < Self.top) }
    }

    @Test func auxiliaryVector() throws {
        let i = info()
        let (p, l, auxvBytes) = try build(i, auxv: [(6, 4096), (9, 0x401000), (11, 1000)])
        #expect(l.auxv.last?.0 == 0, "auxv ends with AT_NULL")
        // What the caller passed comes first, in order.
        #expect(l.auxv.prefix(3).map { $0.0 } == [6, 9, 11])
        #expect(value(l.auxv, 6) == 4096)
        #expect(value(l.auxv, 9) == 0x401000)
        // AT_RANDOM points at the 16 bytes, 16-byte aligned... at least readable and exact.
        let random = try #require(value(l.auxv, 25), "no AT_RANDOM")
        #expect(try p.memory.read(random, count: 16) == i.atRandom)
        #expect(random > l.sp && random + 16 <= Self.top)
        // AT_EXECFN is the path as given to exec; AT_PLATFORM names the machine.
        let execfn = try #require(value(l.auxv, 31), "no AT_EXECFN")
        #expect(String(decoding: try p.memory.readCString(execfn), as: UTF8.self) == "./prog")
        let platform = try #require(value(l.auxv, 15), "no AT_PLATFORM")
        #expect(String(decoding: try p.memory.readCString(platform), as: UTF8.self) == "x86_64")
        // Each key once.
        let keys = l.auxv.map { $0.0 }
        #expect(Set(keys).count == keys.count)
        // The bytes returned for /proc/self/auxv are the vector on the stack.
        var expected: [UInt8] = []
        for (k, v) in l.auxv {
            expected += withUnsafeBytes(of: k.littleEndian, Array.init) + withUnsafeBytes(of: v.littleEndian, Array.init)
        }
        #expect(auxvBytes == expected)
    }

    @Test func emptyArgvAndEnvironment() throws {
        let (_, l, _) = try build(info(argv: [], envp: []))
        #expect(l.argc == 0)
        #expect(l.argv.isEmpty && l.envp.isEmpty)
        #expect(l.auxv.last?.0 == 0)
    }

    @Test func unusualStrings() throws {
        let argv = ["prog", "", "with spaces", "ünïcödé ✓", String(repeating: "x", count: 10_000)]
        let envp = ["K=" + String(repeating: "v", count: 3000), "=odd", "NOEQUALS"]
        let (_, l, _) = try build(info(argv: argv, envp: envp))
        #expect(l.argv == argv)
        #expect(l.envp == envp)
        #expect(l.sp % 16 == 0)
    }

    @Test func randomBytesAreExactlyTheOnesGiven() throws {
        let a = try build(info(random: Array(repeating: 0, count: 16)))
        let b = try build(info(random: Array(repeating: 0xff, count: 16)))
        let ra = try #require(value(a.1.auxv, 25)), rb = try #require(value(b.1.auxv, 25))
        #expect(try a.0.memory.read(ra, count: 16) == Array(repeating: 0, count: 16))
        #expect(try b.0.memory.read(rb, count: 16) == Array(repeating: 0xff, count: 16))
        #expect(ra == rb, "the layout does not depend on the random bytes")
    }

    @Test func aStackTooSmallFailsCleanly() throws {
        let p = try makeProcess()
        try p.map(Mapping(start: Self.top - 0x1000, end: Self.top, protection: .rw, name: "[stack]"))
        let huge = info(argv: ["prog", String(repeating: "y", count: 8000)])
        #expect(throws: GuestMemoryFault.self) {
            _ = try InitialStack.build(memory: p.memory, top: Self.top, info: huge, auxv: [])
        }
    }
}
