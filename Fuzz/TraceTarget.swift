// libFuzzer target for the trace reader (scripts/fuzz.sh trace). Built
// together with Sources/Trace as one module, so it reaches the decoder
// directly. The first input byte picks what the rest is:
//   0: an events block payload (event count from the next byte, format 3 or 4)
//   1: header.json
//   2: a whole events file, read by TraceReader behind a fixed header
//   3: a stored range (files/<sha256> of a file mapping, format 5)
//   4: a compressed stored file (files/<sha256> of an exec'd file, format 6)
// A crash, a Swift trap or a failed precondition is a finding.
import Glibc

@_cdecl("LLVMFuzzerTestOneInput")
public func traceFuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 2 else { return 0 }
    let input = UnsafeRawBufferPointer(start: data, count: size)
    let rest = UnsafeRawBufferPointer(rebasing: input[2...])
    switch input[0] % 5 {
    case 0:
        let version: UInt32 = input[1] & 0x80 != 0 ? 3 : 4
        let count = Int(input[1] & 0x7f) + 1
        guard let events = try? EventEncoding.decode(rest, count: count, version: version) else { return 0 }
        // What decodes is valid, and reads back the same once re-encoded.
        var again: [UInt8] = []
        for e in events {
            precondition(EventValidation.problem(e) == nil, "decoded an invalid event: \(e)")
            do { try EventEncoding.encode(e, into: &again) } catch { preconditionFailure("cannot re-encode \(e): \(error)") }
        }
        if version == traceFormatVersion {
            let back = again.withUnsafeBytes { try? EventEncoding.decode($0, count: count) }
            precondition(back == events, "re-encoded events decode differently")
        }
    case 1:
        if let header = try? HeaderJSON.decode(Array(rest), path: "fuzz"), header.formatVersion >= 4 {
            // A header that passed its checksum re-encodes to one that does too.
            let bytes = try! HeaderJSON.encode(header, pretty: false)
            precondition((try? HeaderJSON.decode(bytes, path: "fuzz")) == header)
        }
    case 2:
        FuzzTraceDirectory.shared.read(rest)
    case 3:
        // What decodes is valid, and encodes to bytes that decode the same.
        guard let range = try? StoredRange.decode(Array(rest)) else { return 0 }
        precondition(range.problem == nil, "decoded an invalid stored range")
        let again = try! range.encode()
        precondition((try? StoredRange.decode(again)) == range, "a re-encoded stored range decodes differently")
    default:
        // What decodes has the size its header declares, and re-encodes to
        // an object that decodes the same.
        let bytes = Array(rest)
        guard let contents = try? CompressedFile.decode(bytes) else { return 0 }
        let declared = bytes.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: 4, as: UInt64.self)) }
        precondition(UInt64(contents.count) == declared, "a compressed file decoded to another size than it declares")
        precondition((try? CompressedFile.decode(try! CompressedFile.encode(contents))) == contents,
                     "a re-encoded compressed file decodes differently")
    }
    return 0
}

/// One trace directory reused for every input: a valid header.json and
/// the input as its events file.
final class FuzzTraceDirectory {
    static let shared = FuzzTraceDirectory()
    let path: String

    init() {
        path = "/tmp/detrec-fuzz-trace-\(getpid())"
        let header = TraceHeader(detrecVersion: "fuzz", argv: ["/p"], envp: [], cwd: "/",
                                 executable: StoredFile(path: "/p", sha256: String(repeating: "0", count: 64), size: 0),
                                 cpuid: [], xcr0: 7, host: "fuzz", recordedAt: "2026-01-01T00:00:00Z")
        _ = try? TraceWriter(directory: path, header: header)
    }

    func read(_ events: UnsafeRawBufferPointer) {
        let fd = open(path + "/events", O_WRONLY | O_TRUNC)
        guard fd >= 0 else { return }
        _ = write(fd, events.baseAddress, events.count)
        close(fd)
        guard let reader = try? TraceReader(directory: path) else { return }
        var n = 0
        while let e = try? reader.next() {
            precondition(EventValidation.problem(e) == nil, "the reader handed out an invalid event: \(e)")
            n += 1
        }
        _ = n
    }
}
