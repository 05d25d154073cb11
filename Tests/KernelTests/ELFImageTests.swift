import Testing
@testable import Kernel

/// Parsing executables with libelf: real gcc output, and untrusted bytes
/// that must give a clear error, never a crash.
@Suite struct ELFImageTests {
    @Test func staticExecutable() throws {
        let bytes = try TestPrograms.compile(TestPrograms.hello, flags: ["-static"])
        let image = try ELFImage(bytes)
        #expect(image.type == ELFImage.ET_EXEC)
        #expect(image.interpreter == nil)
        #expect(image.phentsize == 56)
        #expect(!image.loadSegments.isEmpty)
        // The entry point lies in an executable PT_LOAD segment.
        let text = image.loadSegments.first { $0.vaddr <= image.entry && image.entry < $0.vaddr + $0.memsz }
        #expect(text?.protection.execute == true)
        #expect(text?.protection.write == false)
        // Every loadable segment lies inside the file, and in the classic non-PIE place.
        for s in image.loadSegments {
            #expect(s.offset + s.filesz <= UInt64(bytes.count))
            #expect(s.filesz <= s.memsz)
            #expect(s.vaddr >= 0x400000)
        }
        let span = try #require(image.span)
        #expect(span.low == 0x400000)
        #expect(span.high > span.low)
        // There is a writable data segment (with bss: memsz > filesz).
        #expect(image.loadSegments.contains { $0.protection.write && $0.memsz >= $0.filesz })
    }

    @Test func staticPIE() throws {
        let bytes = try TestPrograms.compile(TestPrograms.hello, flags: ["-static-pie"])
        let image = try ELFImage(bytes)
        #expect(image.type == ELFImage.ET_DYN)
        #expect(image.interpreter == nil)
        #expect(image.span?.low == 0, "a PIE is linked at 0")
        #expect(image.entry < 0x100000)
    }

    @Test func dynamicExecutableNamesItsInterpreter() throws {
        let bytes = try TestPrograms.compile(TestPrograms.hello, flags: [])
        let image = try ELFImage(bytes)
        #expect(image.interpreter?.hasPrefix("/lib") == true, "\(image.interpreter ?? "nil")")
        #expect(image.interpreter?.hasSuffix("ld-linux-x86-64.so.2") == true)
        #expect(image.segments.contains { $0.type == ELFImage.PT_INTERP })
    }

    @Test func garbageIsNotELF() {
        #expect(throws: ELFImage.LoadError.notELF) { try ELFImage([]) }
        #expect(throws: ELFImage.LoadError.notELF) { try ELFImage([0x7f, 0x45, 0x4c, 0x46]) }
        #expect(throws: ELFImage.LoadError.notELF) { try ELFImage(Array("#!/bin/sh\necho hello\n".utf8) + [UInt8](repeating: 0, count: 64)) }
        #expect(throws: ELFImage.LoadError.notELF) { try ELFImage([UInt8](repeating: 0xff, count: 4096)) }
    }

    func patched(_ bytes: [UInt8], _ changes: [(Int, [UInt8])]) -> [UInt8] {
        var b = bytes
        for (at, new) in changes { b.replaceSubrange(at..<at + new.count, with: new) }
        return b
    }

    @Test func wrongKindsOfELF() throws {
        let bytes = try TestPrograms.compile(TestPrograms.hello, flags: ["-static"])
        #expect(throws: ELFImage.LoadError.wrongClass) { try ELFImage(patched(bytes, [(4, [1])])) }           // ELFCLASS32
        #expect(throws: ELFImage.LoadError.wrongMachine) { try ELFImage(patched(bytes, [(18, [183, 0])])) }   // EM_AARCH64
        #expect(throws: ELFImage.LoadError.notExecutable(1)) { try ELFImage(patched(bytes, [(16, [1, 0])])) } // ET_REL
        #expect(throws: ELFImage.LoadError.notExecutable(4)) { try ELFImage(patched(bytes, [(16, [4, 0])])) } // ET_CORE
        let description = ELFImage.LoadError.wrongMachine.description
        #expect(description.contains("x86-64"))
    }

    @Test func truncatedExecutablesAreRefused() throws {
        let bytes = try TestPrograms.compile(TestPrograms.hello, flags: ["-static"])
        // Cut anywhere before the end of the last loadable segment's file bytes.
        let image = try ELFImage(bytes)
        let loadEnd = Int(image.loadSegments.map { $0.offset + $0.filesz }.max() ?? 0)
        for length in [63, 64, 65, 100, 64 + 56, 300, 1000, 4096, bytes.count / 2, loadEnd - 1] {
            let cut = Array(bytes.prefix(length))
            #expect(throws: ELFImage.LoadError.self, "cut to \(length) bytes") { try ELFImage(cut) }
        }
    }

    @Test func segmentsOutsideTheFileAreRefused() throws {
        let bytes = try TestPrograms.compile(TestPrograms.hello, flags: ["-static"])
        let image = try ELFImage(bytes)
        let phoff = Int(image.phoff)
        let first = try #require(image.segments.firstIndex { $0.type == ELFImage.PT_LOAD })
        let ph = phoff + first * 56
        func u64(_ v: UInt64) -> [UInt8] { withUnsafeBytes(of: v.littleEndian, Array.init) }
        func u16(_ v: UInt16) -> [UInt8] { withUnsafeBytes(of: v.littleEndian, Array.init) }
        let cases: [(String, [UInt8])] = [
            ("offset past the end", patched(bytes, [(ph + 8, u64(UInt64(bytes.count) + 4096))])),
            ("offset + filesz overflows", patched(bytes, [(ph + 8, u64(UInt64.max - 10)), (ph + 32, u64(100))])),
            ("filesz past the end", patched(bytes, [(ph + 32, u64(UInt64(bytes.count) * 2)), (ph + 40, u64(UInt64(bytes.count) * 2))])),
            ("filesz > memsz", patched(bytes, [(ph + 40, u64(0))])),
            ("vaddr in the kernel half", patched(bytes, [(ph + 16, u64(0xffff_8000_0000_0000))])),
            ("huge memsz", patched(bytes, [(ph + 40, u64(UInt64.max))])),
            ("program headers past the end", patched(bytes, [(32, u64(UInt64(bytes.count) + 1))])),
            ("no program headers", patched(bytes, [(56, u16(0))])),
        ]
        for (what, b) in cases {
            #expect(throws: ELFImage.LoadError.self, "\(what)") { try ELFImage(b) }
        }
    }

    @Test func randomCorruptionOfTheHeadersNeverCrashes() throws {
        let bytes = try TestPrograms.compile(TestPrograms.hello, flags: ["-static"])
        let headerEnd = min(bytes.count, 64 + 56 * 16)
        var rng = SplitMix64(seed: 0x5eed)
        var parsed = 0, refused = 0
        for _ in 0..<400 {
            var b = bytes
            for _ in 0..<(1 + Int(rng.next() % 4)) {
                let at = 16 + Int(rng.next() % UInt64(headerEnd - 16))
                b[at] = UInt8(truncatingIfNeeded: rng.next())
            }
            do {
                let image = try ELFImage(b)
                parsed += 1
                // Whatever parses is consistent.
                for s in image.loadSegments {
                    let (end, overflow) = s.offset.addingReportingOverflow(s.filesz)
                    #expect(!overflow && end <= UInt64(b.count))
                }
            } catch {
                refused += 1
                #expect(!error.description.isEmpty)
            }
        }
        #expect(parsed + refused == 400)
    }
}

/// A small deterministic generator for the corruption test.
struct SplitMix64 {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}
