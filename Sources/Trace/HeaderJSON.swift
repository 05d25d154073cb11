#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// JSON for header.json and for `detrec dump`. Kept apart so only this file needs Foundation.
enum HeaderJSON {
    /// The largest header.json we are willing to read (argv/envp could be big, not this big).
    static let maxSize = 16 << 20

    /// The key of the header's checksum (format 4): the lowercase hex SHA-256
    /// of `canonical(header)`, the header's other fields as compact JSON.
    static let checksumKey = "headerChecksum"

    /// The bytes the checksum covers: every field TraceHeader encodes, sorted
    /// keys, no whitespace. Computed from the decoded header on read, so any
    /// change to a field's value (argv, envp, CPU, ids in `extra`) shows.
    static func canonical(_ header: TraceHeader) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Array(try encoder.encode(header))
    }

    static func checksum(_ header: TraceHeader) throws -> String {
        SHA256.hex(try canonical(header))
    }

    /// The header with its checksum, as header.json holds it.
    private struct Sealed: Encodable {
        var header: TraceHeader
        var checksum: String
        struct Key: CodingKey {
            var stringValue: String
            var intValue: Int? { nil }
            init(stringValue: String) { self.stringValue = stringValue }
            init?(intValue: Int) { nil }
        }
        func encode(to encoder: any Encoder) throws {
            try header.encode(to: encoder)
            var c = encoder.container(keyedBy: Key.self)
            try c.encode(checksum, forKey: Key(stringValue: HeaderJSON.checksumKey))
        }
    }

    static func encode(_ header: TraceHeader, pretty: Bool) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = pretty
            ? [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
            : [.sortedKeys, .withoutEscapingSlashes]
        return Array(try encoder.encode(Sealed(header: header, checksum: try checksum(header))))
    }

    /// Decodes header.json; checks the version before the rest so a newer trace is reported
    /// as "newer" even if its other fields changed shape. From format 4 on the
    /// checksum must match: an edited header is refused, not replayed.
    static func decode(_ bytes: [UInt8], path: String) throws(TraceError) -> TraceHeader {
        struct VersionProbe: Decodable { var formatVersion: UInt32; var headerChecksum: String? }
        let data = Data(bytes)
        let decoder = JSONDecoder()
        let probe: VersionProbe
        do {
            probe = try decoder.decode(VersionProbe.self, from: data)
        } catch {
            throw .corruptHeader(path: path, reason: describe(error))
        }
        if probe.formatVersion > traceFormatVersion {
            throw .newerVersion(found: probe.formatVersion, supported: traceFormatVersion)
        }
        if probe.formatVersion == 0 {
            throw .corruptHeader(path: path, reason: "format version 0 does not exist")
        }
        let header: TraceHeader
        do {
            header = try decoder.decode(TraceHeader.self, from: data)
        } catch {
            throw .corruptHeader(path: path, reason: describe(error))
        }
        guard probe.formatVersion >= 4 else { return header }
        guard let recorded = probe.headerChecksum else {
            throw .corruptHeader(path: path, reason: "missing field \"\(checksumKey)\"")
        }
        let computed: String
        do { computed = try checksum(header) } catch {
            throw .corruptHeader(path: path, reason: "cannot re-encode the header: \(error)")
        }
        guard computed == recorded else { throw .headerChecksumMismatch(path: path) }
        return header
    }

    /// A one-line reason from a DecodingError (its default description is multi-line noise).
    private static func describe(_ error: any Error) -> String {
        guard let e = error as? DecodingError else { return "\(error)" }
        func where_(_ ctx: DecodingError.Context) -> String {
            let path = ctx.codingPath.map { $0.intValue.map(String.init) ?? $0.stringValue }
            return path.isEmpty ? "" : " at \(path.joined(separator: "."))"
        }
        switch e {
        case let .keyNotFound(key, ctx): return "missing field \"\(key.stringValue)\"\(where_(ctx))"
        case let .typeMismatch(_, ctx): return "wrong type\(where_(ctx)): \(ctx.debugDescription)"
        case let .valueNotFound(_, ctx): return "null value\(where_(ctx))"
        case let .dataCorrupted(ctx): return "invalid JSON\(where_(ctx)): \(ctx.debugDescription)"
        @unknown default: return "\(e)"
        }
    }
}
