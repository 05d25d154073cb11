#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// JSON for header.json and for `detrec dump`. Kept apart so only this file needs Foundation.
enum HeaderJSON {
    /// The largest header.json we are willing to read (argv/envp could be big, not this big).
    static let maxSize = 16 << 20

    static func encode(_ header: TraceHeader, pretty: Bool) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = pretty
            ? [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
            : [.sortedKeys, .withoutEscapingSlashes]
        return Array(try encoder.encode(header))
    }

    /// Decodes header.json; checks the version before the rest so a newer trace is reported
    /// as "newer" even if its other fields changed shape.
    static func decode(_ bytes: [UInt8], path: String) throws(TraceError) -> TraceHeader {
        struct VersionProbe: Decodable { var formatVersion: UInt32 }
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
        do {
            return try decoder.decode(TraceHeader.self, from: data)
        } catch {
            throw .corruptHeader(path: path, reason: describe(error))
        }
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
