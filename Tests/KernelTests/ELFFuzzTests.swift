import KVMUser
import Testing
@testable import Kernel

/// A seeded mutator over real executables (deterministic, bounded): header
/// and program header fields set to hostile values (entry points and
/// offsets that overflow, segments up to 2^40 bytes or past user space,
/// overlapping segments, thousands of program headers), random bytes and
/// truncation. Parsing and loading give a typed error or a loaded image,
/// never a Swift trap or an unbounded allocation.
@Suite(.serialized) struct ELFFuzzTests {
    static let interesting: [UInt64] = [
        0, 1, 0xfff, 0x1000, 0x40_0000, 0x5555_5555_4000, 0x7fff_ffff_0000, 0x7fff_ffff_f000,
        1 << 40, (1 << 40) - 1, 1 << 47, (1 << 47) - 0x1000, 0xffff_8000_0000_0000,
        UInt64.max, UInt64.max - 0xfff, UInt64(Int64.max), 0x8000_0000_0000_0000,
    ]

    static func put(_ bytes: inout [UInt8], _ at: Int, _ value: UInt64, size: Int) {
        guard at >= 0, at + size <= bytes.count else { return }
        for i in 0..<size { bytes[at + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(i))) }
    }

    static func get(_ bytes: [UInt8], _ at: Int, size: Int) -> UInt64 {
        guard at >= 0, at + size <= bytes.count else { return 0 }
        return (0..<size).reduce(UInt64(0)) { $0 | UInt64(bytes[at + $1]) << (8 * UInt64($1)) }
    }

    /// One mutation of `original`.
    static func mutate(_ original: [UInt8], _ rng: inout FuzzRNG) -> [UInt8] {
        var b = original
        func pick() -> UInt64 {
            Int.random(in: 0..<4, using: &rng) == 0 ? rng.next() : interesting[Int.random(in: 0..<interesting.count, using: &rng)]
        }
        let phoff = Int(clamping: get(b, 32, size: 8))
        let phnum = Int(get(b, 56, size: 2))
        for _ in 0..<Int.random(in: 1...3, using: &rng) {
            switch Int.random(in: 0..<9, using: &rng) {
            case 0: put(&b, 24, pick(), size: 8)                                        // e_entry
            case 1: put(&b, 32, pick(), size: 8)                                        // e_phoff
            case 2: put(&b, 56, UInt64.random(in: 0...0xffff, using: &rng), size: 2)    // e_phnum
            case 3: put(&b, 54, [0, 1, 55, 56, 57, 64, 0xffff][Int.random(in: 0..<7, using: &rng)], size: 2)  // e_phentsize
            case 4, 5, 6:                                                               // one field of one phdr
                guard phnum > 0 else { break }
                let ph = phoff + 56 * Int.random(in: 0..<phnum, using: &rng)
                let field = [(0, 4), (4, 4), (8, 8), (16, 8), (32, 8), (40, 8), (48, 8)][Int.random(in: 0..<7, using: &rng)]
                let value = field.0 == 0 ? [1, 3, 6, 0x6474e551, 0, 0xffff_ffff][Int.random(in: 0..<6, using: &rng)] : pick()
                put(&b, ph + field.0, value, size: field.1)
            case 7:                                                                     // overlap two segments
                guard phnum > 1 else { break }
                let a = phoff + 56 * Int.random(in: 0..<phnum, using: &rng)
                let c = phoff + 56 * Int.random(in: 0..<phnum, using: &rng)
                put(&b, c + 16, get(b, a + 16, size: 8) &+ UInt64.random(in: 0...0x2000, using: &rng), size: 8)
                put(&b, c + 0, 1, size: 4)
            default:                                                                    // random bytes, or a cut
                if Int.random(in: 0..<2, using: &rng) == 0 {
                    for _ in 0..<4 { b[Int.random(in: 0..<min(b.count, 8192), using: &rng)] = UInt8.random(in: 0...255, using: &rng) }
                } else {
                    b.removeLast(Int.random(in: 1..<b.count, using: &rng))
                }
            }
        }
        return b
    }

    @Test(arguments: [["-static"], ["-static-pie"], []])
    func mutatedExecutablesParseAndLoadWithoutTrapping(flags: [String]) throws {
        let original = try TestPrograms.compile(TestPrograms.hello, flags: flags)
        var rng = FuzzRNG(state: 0xE1F + UInt64(flags.count * 7 + (flags.first?.count ?? 0)))
        var parsed = 0, loaded = 0
        let info = StartupInfo(argv: ["p"], envp: [], execPath: "/p", exePath: "/p", atRandom: Array(repeating: 1, count: 16),
                               uid: 0, euid: 0, gid: 0, egid: 0, pid: 1)
        for round in 0..<300 {
            let bytes = Self.mutate(original, &rng)
            guard (try? ELFImage(bytes)) != nil else { continue }
            parsed += 1
            // Loading needs a fresh vCPU process (about 0.1 s): six per executable.
            guard parsed % 8 == 0, parsed <= 48 else { continue }
            let process = try makeProcess()
            do {
                try ProgramLoader.start(bytes, interpreter: nil, info: info, process: process, hwcap: 0)
                loaded += 1
            } catch {
                #expect(!error.description.isEmpty, "round \(round)")
            }
        }
        #expect(parsed > 20, "the mutator rarely produced a parseable file (\(parsed))")
    }

    /// Hand-made worst cases: a 2^40-byte bss, a segment reaching past user
    /// space, an entry point that overflows with the PIE bias, overlapping
    /// segments with different protections.
    @Test func hostileSegmentsAreRefusedOrLoaded() throws {
        let original = try TestPrograms.compile(TestPrograms.hello, flags: ["-static-pie"])
        let phoff = Int(Self.get(original, 32, size: 8))
        let phnum = Int(Self.get(original, 56, size: 2))
        let firstLoad = try #require((0..<phnum).map { phoff + 56 * $0 }.first { Self.get(original, $0, size: 4) == 1 })
        let info = StartupInfo(argv: ["p"], envp: [], execPath: "/p", exePath: "/p", atRandom: Array(repeating: 1, count: 16),
                               uid: 0, euid: 0, gid: 0, egid: 0, pid: 1)
        func load(_ edit: (inout [UInt8]) -> Void) throws -> String? {
            var b = original
            edit(&b)
            let process = try makeProcess()
            do {
                try ProgramLoader.start(b, interpreter: nil, info: info, process: process, hwcap: 0)
                return nil
            } catch {
                return error.description
            }
        }
        let hugeBSS = try load { Self.put(&$0, firstLoad + 40, (1 << 40) - 1, size: 8) }
        #expect(hugeBSS?.contains("pages") == true, "\(hugeBSS ?? "loaded")")
        let pastUserSpace = try load { Self.put(&$0, firstLoad + 16, (1 << 47) - 0x1000, size: 8) }
        #expect(pastUserSpace != nil)
        // A PIE's entry wraps with its bias as Linux's unsigned sum does
        // (here to just below the image: the program would fault there).
        _ = try load { Self.put(&$0, 24, UInt64.max - 0x10, size: 8) }
        // A fixed-address program's entry in kernel space: binfmt_elf's EINVAL.
        let fixed = try TestPrograms.compile(TestPrograms.hello, flags: ["-static"])
        var wild = fixed
        Self.put(&wild, 24, 0xffff_8000_0000_1000, size: 8)
        let process = try makeProcess()
        #expect(throws: ProgramLoader.Failure.self) {
            try ProgramLoader.start(wild, interpreter: nil, info: info, process: process, hwcap: 0)
        }
        let wildPhoff = try load { Self.put(&$0, 32, UInt64.max, size: 8) }
        #expect(wildPhoff != nil, "libelf refuses program headers outside the file")
    }
}

/// SplitMix64: a deterministic generator, so every run mutates alike.
struct FuzzRNG: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
