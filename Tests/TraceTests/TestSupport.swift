import Foundation
@testable import Trace

/// A fresh empty directory under /tmp, removed by `cleanup()`.
struct TempDir {
    let path: String

    init() {
        path = "/tmp/detrec-trace-test-" + UUID().uuidString
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func cleanup() { try? FileManager.default.removeItem(atPath: path) }

    func sub(_ name: String) -> String { path + "/" + name }
}

func sampleHeader(executableSHA: String = String(repeating: "0", count: 64)) -> TraceHeader {
    TraceHeader(
        detrecVersion: "0.1.0-test",
        argv: ["/bin/echo", "hello", "wörld \"quoted\""],
        envp: ["PATH=/usr/bin:/bin", "LANG=C.UTF-8"],
        cwd: "/home/user",
        executable: StoredFile(path: "/bin/echo", sha256: executableSHA, size: 1234),
        cpuid: [
            CPUIDEntry(function: 0, index: 0, flags: 0, eax: 0xd, ebx: 0x756e_6547, ecx: 0x6c65_746e, edx: 0x4965_6e69),
            CPUIDEntry(function: 7, index: 0, flags: 1, eax: 0, ebx: 0xffff_ffff, ecx: 0, edx: 0x8000_0000),
        ],
        xcr0: 0x8000_0000_0000_02e7,  // above 2^53: JSON must keep it exact
        host: "kvm_pvm, no PMU",
        recordedAt: "2025-01-31T12:34:56Z",
        extra: ["note": "test"])
}

func readSyscall(tid: Int32 = 100, _ n: Int, at address: UInt64 = 0x7ffd_0000) -> Event {
    .syscall(SyscallRecord(tid: tid, ticks: UInt64(n) * 1000, rip: 0x40_1000 + UInt64(n), number: 0,
                           args: [3, address, UInt64(n), 0, 0, 0], result: Int64(n),
                           writes: n == 0 ? [] : [.bytes(address: address, data: (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 7) })]))
}

/// One of every kind, with extreme field values.
func everyKindEvents() -> [Event] {
    let sha = SHA256.hex(Array("some file".utf8))
    return [
        .processStart(tid: 100, atRandom: Array(0..<16)),
        readSyscall(512),
        .syscall(SyscallRecord(tid: 100, ticks: 0, rip: 0x40_2000, number: 2,
                               args: [0x7ffd_1000, 0, 0, 0, 0, 0], result: -2, writes: [])),
        .syscall(SyscallRecord(tid: 101, ticks: 77, rip: 0x40_3000, number: 9,
                               args: [0, 8192, 1, 2, 3, 4096], result: 0x7f00_0000_0000,
                               writes: [.stored(address: 0x7f00_0000_0000, length: 8192, sha256: sha, offset: 4096),
                                        .storedRange(address: 0x7f00_0000_4000, length: 100, sha256: sha, offset: 1 << 32),
                                        .bytes(address: 0, data: []),
                                        .bytes(address: 0x1000, data: [1, 2, 3])])),
        .syscall(SyscallRecord(tid: Int32.max, ticks: UInt64.max, rip: UInt64.max, number: UInt64.max,
                               args: Array(repeating: UInt64.max, count: 6), result: Int64.min, writes: [])),
        .fatalSignal(tid: 101, signal: 11, code: 1, rip: 0x40_1234, address: 0xdead_beef),
        .syscall(SyscallRecord(tid: 1, ticks: 0, rip: 0, number: 0x1_0000_0027, args: Array(repeating: 0, count: 6),
                               result: 0, writes: [.bytes(address: 0x7fff_ffff_fff0, data: Array(repeating: 0xff, count: 16)),
                                                   .stored(address: 0, length: 0, sha256: sha, offset: 0)])),
        .fatalSignal(tid: 101, signal: 64, code: Int32.min, rip: UInt64.max, address: UInt64.max),
        .blocked(tid: 1, number: UInt64.max, rip: UInt64.max),
        .signal(tid: 1, signal: -64, code: Int32.max),
        .signal(tid: 1, signal: 0x7fff_ff40, code: -2),
        .dataCheck(tid: 1, length: UInt64.max, crc32c: UInt32.max),
        .preempt(tid: 1, rip: UInt64.max, hits: UInt64.max, registers: UInt64.max),
        .exit(tid: Int32.max, status: 255),
        .processStart(tid: 1, atRandom: Array(repeating: 0xff, count: 16)),
    ]
}

/// Writes `events` to a new trace in `dir` and returns the writer's view of it.
@discardableResult
func writeTrace(_ dir: String, _ events: [Event], blockLimit: Int = 256 * 1024, finish: Bool = true) throws -> TraceWriter {
    let w = try TraceWriter(directory: dir, header: sampleHeader(), blockLimit: blockLimit)
    for e in events { try w.append(e) }
    if finish { try w.finish() } else { try w.flush() }
    return w
}

/// Reads every event; returns them with the error that stopped reading, if any.
func readEverything(_ dir: String) throws -> (events: [Event], ending: TraceEnding?, error: TraceError?) {
    let r = try TraceReader(directory: dir)
    var events: [Event] = []
    do {
        while let e = try r.next() { events.append(e) }
    } catch {
        return (events, r.ending, error)
    }
    return (events, r.ending, nil)
}

/// Start offset and first-event index of each block in an events file, plus its size.
struct BlockMap {
    var starts: [Int] = []
    var firstEvents: [Int] = []
    var eventCounts: [Int] = []
    var size = 0

    init(_ bytes: [UInt8]) {
        var off = 0
        size = bytes.count
        while off + BlockHeader.size <= bytes.count {
            let h = bytes.withUnsafeBytes { BlockHeader(parsing: UnsafeRawBufferPointer(rebasing: $0[off..<(off + BlockHeader.size)])) }
            starts.append(off)
            firstEvents.append(Int(h.firstEvent))
            eventCounts.append(Int(h.eventCount))
            off += BlockHeader.size + Int(h.compressedLength)
        }
    }

    /// Index of the block containing byte `offset`.
    func block(containing offset: Int) -> Int {
        (starts.lastIndex { $0 <= offset }) ?? 0
    }
}

func readBytes(_ path: String) throws -> [UInt8] {
    Array(try Data(contentsOf: URL(fileURLWithPath: path)))
}

/// Plain open/write/close: Data.write is slow enough to matter in the every-offset tests.
func writeBytes(_ path: String, _ bytes: [UInt8]) throws {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    guard fd >= 0 else { throw TraceError.io(path: path, message: "open failed") }
    defer { close(fd) }
    let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    guard n == bytes.count else { throw TraceError.io(path: path, message: "short write") }
}

/// Deterministic PRNG so fuzz-style tests are reproducible.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
