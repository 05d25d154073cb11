import Foundation
import Glibc
import KVMUser
@testable import Kernel

/// Builds C programs for the ELF tests with gcc, once per (source, flags)
/// in this test process.
enum TestPrograms {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var built: [String: [UInt8]] = [:]

    static func compile(_ source: String, flags: [String]) throws -> [UInt8] {
        let key = flags.joined(separator: " ") + "\n" + source
        lock.lock()
        defer { lock.unlock() }
        if let bytes = built[key] { return bytes }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("detrec-kernel-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let src = dir.appendingPathComponent("p.c"), exe = dir.appendingPathComponent("p")
        try source.write(to: src, atomically: true, encoding: .utf8)
        let p = Foundation.Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/gcc")
        p.arguments = flags + ["-O1", "-w", "-o", exe.path, src.path]
        p.standardInput = FileHandle.nullDevice
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw CompileFailed(flags: flags) }
        let bytes = [UInt8](try Data(contentsOf: exe))
        built[key] = bytes
        return bytes
    }

    struct CompileFailed: Error { var flags: [String] }

    static let hello = "#include <stdio.h>\nint main(void) { puts(\"hi\"); return 0; }\n"
}

/// A world for calling syscall handlers directly: it never touches the
/// host. `host` counts the calls and answers `hostResult` without running
/// the body, as a replay would.
final class StubWorld: HostWorld {
    var isReplaying: Bool { true }
    var hostCalls = 0
    var hostResult: Int64 = 0
    var echoed: [(Int32, [UInt8])] = []
    var currentThread: Int32 = 0

    func startupRandom() throws -> [UInt8] { Array(repeating: 0xab, count: 16) }
    func enterSyscall(_ entry: SyscallEntry) throws -> Termination? { nil }
    func host(memory: GuestMemory, sharedFiles: [Range<UInt64>], _ body: (inout HostEffects) throws(Errno) -> Int64) throws -> HostOutcome {
        hostCalls += 1
        return HostOutcome(result: hostResult)
    }
    func exitSyscall(_ entry: SyscallEntry, result: Int64) throws {}
    func pickThread(_ choose: () throws -> Int32) throws -> Int32 { try choose() }
    func shouldBlock(_ check: () -> Bool) -> Bool { false }
    func signalEndsWait(_ stillWaits: () -> Bool) -> Bool { stillWaits() }
    func blocked(_ entry: SyscallEntry) throws {}
    func processExit(status: Int32) throws {}
    func fatalSignal(_ signal: FatalSignal) throws {}
    func processKilled(_ signal: FatalSignal) throws {}
    func takeHostSignal() -> Int32? { nil }
    func takeStall() -> Bool { false }
    func outsideSignals(_ due: () -> [OutsideSignal]) throws -> [OutsideSignal] { [] }
    func pace(seconds: Double) {}
    func loadFile(_ read: () throws(Errno) -> FileContent) throws -> FileContent { throw Errno.noent }
    func randomBytes(_ count: Int) throws -> [UInt8] { Array(repeating: 0xcd, count: count) }
    func executablePath(_ opened: () -> String?) throws -> String? { opened() }
    func checkData(_ bytes: ArraySlice<UInt8>) throws {}
    func echo(_ bytes: [UInt8], to fd: Int32) { echoed.append((fd, bytes)) }
    var eventCount: Int { 0 }
    func recordedPreemption() throws -> PreemptionPoint? { nil }
    func preempted(_ point: PreemptionPoint) throws {}
    func interruptGuest(at deadline: Double?) {}
}

/// A process on a real vCPU with nothing loaded: tests map what they need.
func makeProcess() throws -> Kernel.Process {
    let device = try KVMDevice()
    let machine = try UserMachine(device: device, cpuid: try CPUIDTable.forRecording(device: device))
    return Kernel.Process(machine: machine, executablePath: "/test/program")
}
