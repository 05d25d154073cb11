#if canImport(Glibc)
import Glibc
#endif

/// The trace format version this detrec writes and the newest it reads.
/// Bump it whenever the encoding of anything in the trace changes (see docs/trace-format.md).
public let traceFormatVersion: UInt32 = 6

/// One CPUID leaf as the recording host reported it to the guest, so replay can present
/// exactly the same CPU.
public struct CPUIDEntry: Codable, Equatable, Sendable {
    public var function: UInt32
    public var index: UInt32
    public var flags: UInt32
    public var eax: UInt32
    public var ebx: UInt32
    public var ecx: UInt32
    public var edx: UInt32

    public init(function: UInt32, index: UInt32, flags: UInt32,
                eax: UInt32, ebx: UInt32, ecx: UInt32, edx: UInt32) {
        self.function = function
        self.index = index
        self.flags = flags
        self.eax = eax
        self.ebx = ebx
        self.ecx = ecx
        self.edx = edx
    }
}

/// A file whose contents are kept in the trace as files/<sha256>.
public struct StoredFile: Codable, Equatable, Sendable {
    /// The path it had when recorded (informational; replay uses the stored copy).
    public var path: String
    /// Lowercase hex SHA-256 of the contents; also its name under files/.
    public var sha256: String
    public var size: UInt64

    public init(path: String, sha256: String, size: UInt64) {
        self.path = path
        self.sha256 = sha256
        self.size = size
    }
}

/// Everything replay needs to know before the first event: written as header.json.
public struct TraceHeader: Codable, Equatable, Sendable {
    public var formatVersion: UInt32
    public var detrecVersion: String
    public var argv: [String]
    public var envp: [String]
    public var cwd: String
    public var executable: StoredFile
    public var cpuid: [CPUIDEntry]
    public var xcr0: UInt64
    /// How the recording host ran the guest, e.g. "kvm_pvm, no PMU".
    public var host: String
    /// ISO-8601 time of the recording, e.g. from `TraceHeader.currentTimestamp()`.
    public var recordedAt: String
    /// Room for later additions that older readers can ignore.
    public var extra: [String: String]
    /// The arguments and environment as bytes, in hex, when one of them
    /// is not UTF-8 (`argv`/`envp` then show it repaired, for people):
    /// execve passes bytes, and replay must give the program the same.
    public var argvHex: [String]?
    public var envpHex: [String]?

    public init(formatVersion: UInt32 = traceFormatVersion, detrecVersion: String,
                argv: [String], envp: [String], cwd: String, executable: StoredFile,
                cpuid: [CPUIDEntry], xcr0: UInt64, host: String, recordedAt: String,
                extra: [String: String] = [:]) {
        self.formatVersion = formatVersion
        self.detrecVersion = detrecVersion
        self.argv = argv
        self.envp = envp
        self.cwd = cwd
        self.executable = executable
        self.cpuid = cpuid
        self.xcr0 = xcr0
        self.host = host
        self.recordedAt = recordedAt
        self.extra = extra
    }

    private enum CodingKeys: String, CodingKey {
        case formatVersion, detrecVersion, argv, envp, cwd, executable, cpuid, xcr0, host, recordedAt, extra, argvHex, envpHex
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        formatVersion = try c.decode(UInt32.self, forKey: .formatVersion)
        detrecVersion = try c.decode(String.self, forKey: .detrecVersion)
        argv = try c.decode([String].self, forKey: .argv)
        envp = try c.decode([String].self, forKey: .envp)
        cwd = try c.decode(String.self, forKey: .cwd)
        executable = try c.decode(StoredFile.self, forKey: .executable)
        cpuid = try c.decode([CPUIDEntry].self, forKey: .cpuid)
        xcr0 = try c.decode(UInt64.self, forKey: .xcr0)
        host = try c.decode(String.self, forKey: .host)
        recordedAt = try c.decode(String.self, forKey: .recordedAt)
        // Optional so hand-written or future-trimmed headers still load.
        extra = try c.decodeIfPresent([String: String].self, forKey: .extra) ?? [:]
        argvHex = try c.decodeIfPresent([String].self, forKey: .argvHex)
        envpHex = try c.decodeIfPresent([String].self, forKey: .envpHex)
    }

    /// Sets `argv`/`envp` from bytes, and the hex forms when needed.
    public mutating func setStrings(argv rawArgv: [[UInt8]], envp rawEnvp: [[UInt8]]) {
        argv = rawArgv.map { String(decoding: $0, as: UTF8.self) }
        envp = rawEnvp.map { String(decoding: $0, as: UTF8.self) }
        let lossy = { (raw: [[UInt8]], text: [String]) in zip(raw, text).contains { Array($0.1.utf8) != $0.0 } }
        argvHex = lossy(rawArgv, argv) ? rawArgv.map(SHA256.hexString) : nil
        envpHex = lossy(rawEnvp, envp) ? rawEnvp.map(SHA256.hexString) : nil
    }

    /// The arguments as the program got them: the hex form when present
    /// (checked: one entry per argument, valid hex), else the text.
    public func argvBytes() throws(TraceError) -> [[UInt8]] { try TraceHeader.bytes(argv, argvHex, "argvHex") }
    public func envpBytes() throws(TraceError) -> [[UInt8]] { try TraceHeader.bytes(envp, envpHex, "envpHex") }

    static func bytes(_ text: [String], _ hex: [String]?, _ key: String) throws(TraceError) -> [[UInt8]] {
        guard let hex else { return text.map { Array($0.utf8) } }
        guard hex.count == text.count else { throw .invalidInput(reason: "header.json: \(key) has \(hex.count) entries for \(text.count)") }
        var out: [[UInt8]] = []
        for h in hex {
            guard let b = SHA256.bytes(fromHex: h) else { throw .invalidInput(reason: "header.json: \(key) holds a string that is not hex") }
            out.append(b)
        }
        return out
    }

    /// The current UTC time as ISO-8601 ("2025-01-31T12:34:56Z"), for `recordedAt`.
    public static func currentTimestamp() -> String {
        var now = time(nil)
        var parts = tm()
        gmtime_r(&now, &parts)
        var buf = [CChar](repeating: 0, count: 32)
        let n = strftime(&buf, buf.count, "%Y-%m-%dT%H:%M:%SZ", &parts)
        return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
