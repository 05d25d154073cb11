import Foundation
import Glibc

/// Removed when the test process exits.
nonisolated(unsafe) var fixtureDirectory: String?

/// A small static C program compiled and recorded once for all the tests,
/// with the addresses of its symbols (static, not PIE: fixed addresses).
struct Fixture: @unchecked Sendable {
    let directory: String
    let detrec: String
    let executable: String
    let trace: String
    let symbols: [String: UInt64]

    static let source = """
        #include <unistd.h>
        int counter;
        __attribute__((noinline)) int bump(int v) {
          counter += v;
          return counter;
        }
        int main(void) {
          for (int i = 0; i < 3; i++) bump(i + 1);
          for (volatile unsigned long spin = 0; spin < 60000000UL; spin++) {}
          write(1, "ok\\n", 3);
          return counter == 6 ? 0 : 1;
        }
        """

    static let shared: Result<Fixture, FixtureError> = Result { try Fixture() }.mapError { FixtureError("\($0)") }

    struct FixtureError: Error, CustomStringConvertible {
        var description: String
        init(_ d: String) { description = d }
    }

    private init() throws {
        detrec = try Fixture.findDetrec()
        directory = NSTemporaryDirectory() + "detrec-gdb-tests-\(getpid())"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        fixtureDirectory = directory
        atexit { if let d = fixtureDirectory { try? FileManager.default.removeItem(atPath: d) } }
        let c = directory + "/prog.c"
        try Fixture.source.write(toFile: c, atomically: true, encoding: .utf8)
        executable = directory + "/prog"
        trace = directory + "/trace"
        let cc = try run("/usr/bin/env", ["gcc", "-static", "-O0", "-g", "-o", executable, c])
        guard cc.status == 0 else { throw FixtureError("gcc failed: \(cc.output)") }
        let rec = try run(detrec, ["record", "-q", "-o", trace, "--", executable])
        guard rec.status == 0, rec.output.contains("ok") else { throw FixtureError("recording failed: \(rec.output)") }
        let nm = try run("/usr/bin/env", ["nm", executable])
        var symbols: [String: UInt64] = [:]
        for line in nm.output.split(separator: "\n") {
            let f = line.split(separator: " ")
            if f.count == 3, let a = UInt64(f[0], radix: 16) { symbols[String(f[2])] = a }
        }
        self.symbols = symbols
    }

    /// The detrec built with the tests: next to the test bundle.
    static func findDetrec() throws -> String {
        var dir = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
        for _ in 0..<3 {
            let candidate = dir.appendingPathComponent("detrec").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            dir = dir.deletingLastPathComponent()
        }
        throw FixtureError("no detrec next to \(URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path)")
    }
}

/// Runs a program to completion, stdout and stderr together.
func run(_ program: String, _ args: [String]) throws -> (status: Int32, output: String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: program)
    p.arguments = args
    let pipe = Pipe()
    p.standardOutput = pipe
    p.standardError = pipe
    p.standardInput = FileHandle.nullDevice
    try p.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: data, as: UTF8.self))
}

/// `detrec replay --gdb-listen 127.0.0.1:0`, with the port it chose.
final class StubProcess {
    let process = Process()
    let port: UInt16
    private let stderr = Pipe()

    convenience init(_ fixture: Fixture) throws {
        try self.init(detrec: fixture.detrec, trace: fixture.trace)
    }

    init(detrec: String, trace: String, extra: [String] = [], environment: [String: String] = [:]) throws {
        process.executableURL = URL(fileURLWithPath: detrec)
        if !environment.isEmpty { process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        process.arguments = ["replay", "--gdb-listen", "127.0.0.1:0"] + extra + [trace]
        process.standardError = stderr
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        // "detrec: waiting for gdb on 127.0.0.1:PORT (...)"
        var text = ""
        let handle = stderr.fileHandleForReading
        while !text.contains("\n") {
            let d = handle.availableData
            if d.isEmpty { break }
            text += String(decoding: d, as: UTF8.self)
        }
        guard let r = text.range(of: "127.0.0.1:"),
              let port = UInt16(text[r.upperBound...].prefix { $0.isNumber }) else {
            process.terminate()
            throw Fixture.FixtureError("the stub did not say where it listens: \(text)")
        }
        self.port = port
    }

    /// Waits for the stub to exit (at most `seconds`), its status.
    func wait(seconds: Double = 30) -> Int32? {
        let deadline = Date().addingTimeInterval(seconds)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning { process.terminate(); return nil }
        return process.terminationStatus
    }
}

/// A raw gdb remote protocol client.
final class RawClient {
    let fd: Int32
    private var buffer: [UInt8] = []

    init(port: UInt16) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else { throw Fixture.FixtureError("connect: \(String(cString: strerror(errno)))") }
        var tv = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    static func checksum(_ s: String) -> String { String(format: "%02x", s.utf8.reduce(UInt8(0)) { $0 &+ $1 }) }

    func sendRaw(_ s: String) {
        let bytes = Array(s.utf8)
        _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    func send(_ payload: String) { sendRaw("$\(payload)#\(RawClient.checksum(payload))") }

    private func fill() -> Bool {
        var chunk = [UInt8](repeating: 0, count: 65536)
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        guard n > 0 else { return false }
        buffer += chunk[0..<n]
        return true
    }

    /// The next single byte (an ack), nil on timeout or close.
    func byte() -> UInt8? {
        if buffer.isEmpty && !fill() { return nil }
        return buffer.removeFirst()
    }

    /// The next byte, left for `packet()`.
    func peek() -> UInt8? {
        if buffer.isEmpty && !fill() { return nil }
        return buffer.first
    }

    /// The next packet's payload, checking its checksum; skips acks.
    func packet() -> String? {
        while true {
            if let dollar = buffer.firstIndex(of: UInt8(ascii: "$")),
               let hash = buffer[dollar...].firstIndex(of: UInt8(ascii: "#")), buffer.count >= hash + 3 {
                let payload = String(decoding: buffer[(dollar + 1)..<hash], as: UTF8.self)
                let sum = String(decoding: buffer[(hash + 1)...(hash + 2)], as: UTF8.self)
                buffer.removeFirst(hash + 3)
                return sum == RawClient.checksum(payload) ? payload : "<bad checksum>"
            }
            if !fill() { return nil }
        }
    }

    func ask(_ payload: String) -> String? {
        send(payload)
        return packet()
    }
}

func hex(_ v: UInt64) -> String { String(v, radix: 16) }

/// A register from a `p` reply (little-endian hex).
func littleEndian(_ s: String) -> UInt64? {
    guard s.count == 16 else { return nil }
    var v: UInt64 = 0
    var chars = Array(s)
    for i in stride(from: 14, through: 0, by: -2) {
        guard let b = UInt64(String(chars[i...i + 1]), radix: 16) else { return nil }
        v = v << 8 | b
    }
    chars.removeAll()
    return v
}

func rip(_ c: RawClient) -> UInt64? { littleEndian(c.ask("p10") ?? "") }

func hexBytes(_ s: String) -> [UInt8] {
    var out: [UInt8] = []
    var i = s.startIndex
    while i < s.endIndex, let j = s.index(i, offsetBy: 2, limitedBy: s.endIndex), let b = UInt8(s[i..<j], radix: 16) {
        out.append(b)
        i = j
    }
    return out
}
