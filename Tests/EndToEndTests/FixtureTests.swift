import Foundation
import Glibc
import Testing
import Trace

/// The trace kept in the repository (traces/, see traces/README.md) must
/// keep replaying: a change that breaks it changes what old traces mean,
/// which needs a deliberate format version bump and a re-recorded fixture.
@Suite struct FixtureTests {
    static let name = "hello-random"
    static let traces = E2E.repositoryRoot() + "/traces"
    static var trace: String { traces + "/" + name }

    static func expected(_ suffix: String) throws -> String {
        try String(contentsOfFile: traces + "/\(name).\(suffix)", encoding: .utf8)
    }

    @Test func fixtureIsPresentAndSmall() throws {
        for file in ["\(Self.name).c", "\(Self.name).stdout", "\(Self.name).status", "README.md",
                     "\(Self.name)/header.json", "\(Self.name)/events", "\(Self.name)/files"] {
            #expect(access(Self.traces + "/" + file, F_OK) == 0, "traces/\(file) is missing")
        }
        var total = 0
        if let walker = FileManager.default.enumerator(atPath: Self.trace) {
            for case let path as String in walker {
                let attributes = try FileManager.default.attributesOfItem(atPath: Self.trace + "/" + path)
                if attributes[.type] as? FileAttributeType == .typeRegular {
                    total += (attributes[.size] as? NSNumber)?.intValue ?? 0
                }
            }
        }
        #expect(total > 0 && total < 1 << 20, "the fixture trace is \(total) bytes; keep it under 1 MiB")
    }

    @Test func fixtureReplaysWithTheRecordedOutputAndStatus() throws {
        let s = Scratch("fixture"); defer { s.remove() }
        let stdout = try Self.expected("stdout")
        let status = Int32(try Self.expected("status").trimmingCharacters(in: .whitespacesAndNewlines))
        #expect(status == 7)
        let before = try snapshot(Self.trace)
        for stdin in [Input.devNull, .closed] {
            let r = try detrec(["replay", Self.trace], stdin: stdin, in: s.path)
            #expect(r.stdout == stdout, """
                The fixture trace no longer replays as recorded. If the trace format or the \
                emulation changed on purpose, bump traceFormatVersion and re-record the \
                fixture as traces/README.md says.
                \(r)
                """)
            #expect(r.status == status, "\(r)")
            #expect(!r.stderr.contains("diverged"), "\(r.stderr)")
        }
        #expect(try snapshot(Self.trace) == before, "replay modified the trace directory")
    }

    @Test func fixtureDumps() throws {
        let s = Scratch("fixture"); defer { s.remove() }
        let d = try dumpJSON(Self.trace, in: s)
        #expect(d.result.status == 0, "\(d.result)")
        let version = d.header.int("formatVersion") ?? 0
        #expect(version >= 1 && version <= Int(traceFormatVersion))
        #expect((d.header["argv"] as? [String])?.last == "fixture")
        #expect(d.events.first?.string("kind") == "processStart")
        #expect(d.events.last?.string("kind") == "exit")
        #expect(d.events.last?.int("status") == 7)
        #expect(!d.syscalls(named: "getrandom").isEmpty)
        #expect(!d.syscalls(named: "clock_gettime").isEmpty)
        // The random bytes the program printed are the ones in the trace.
        let printed = try Self.expected("stdout").split(separator: "\n").first { $0.hasPrefix("getrandom(16)=16 ") }
            .map { String($0.split(separator: " ").last ?? "") }
        let logged = d.syscalls(named: "getrandom").compactMap { e -> String? in
            guard e.int("result") == 16, let w = (e["writes"] as? [[String: Any]])?.first else { return nil }
            return w.string("data")
        }
        #expect(printed != nil && logged.contains(printed!), "printed \(printed ?? "nothing"), trace has \(logged)")
    }

    /// Names, sizes and modification times of everything under `dir`.
    func snapshot(_ dir: String) throws -> [String: String] {
        var out: [String: String] = [:]
        let fm = FileManager.default
        out["."] = "\((try fm.attributesOfItem(atPath: dir))[.modificationDate] ?? "")"
        guard let walker = fm.enumerator(atPath: dir) else { return out }
        for case let path as String in walker {
            let a = try fm.attributesOfItem(atPath: dir + "/" + path)
            out[path] = "\(a[.size] ?? "") \(a[.modificationDate] ?? "")"
        }
        return out
    }
}
