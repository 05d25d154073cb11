import Foundation
import Glibc
import Testing
import KVMUser
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
        try Self.checkReplay(Self.name)
    }

    /// The same program recorded with `--cpu host` on an Intel host: on a
    /// host with that CPU's features it replays; on any other it must
    /// refuse, naming what it lacks, never diverge.
    @Test func hostModelFixtureReplaysOrNamesWhatThisHostLacks() throws {
        let s = Scratch("fixture-host"); defer { s.remove() }
        let r = try detrec(["replay", Self.traces + "/hello-random-host"], in: s.path)
        if r.status == 1 && r.stderr.contains("the trace cannot run on this CPU") {
            #expect(r.stderr.contains("its CPU model (host) needs ") || r.stderr.contains("XSAVE state"), "\(r.stderr)")
            let named = CPUFeature.known.map(\.name) + XSaveComponent.names.values
            #expect(named.contains { r.stderr.contains($0) }, "the refusal names no feature: \(r.stderr)")
        } else {
            try Self.checkReplay("hello-random-host")
        }
    }

    /// A trace whose model needs a feature this host lacks is refused with
    /// that feature's name (the model is edited in a copy).
    @Test func aModelNeedingAMissingFeatureIsRefusedByName() throws {
        let s = Scratch("fixture-edit"); defer { s.remove() }
        let copy = s.file("trace")
        _ = try run(["/bin/cp", "-r", Self.trace, copy], in: s.path)
        let host = try HostCPU.capabilities(device: try KVMDevice())
        guard let lacking = CPUFeature.known.first(where: { f in
            !f.isSet(in: host.first { $0.function == f.function && $0.index == f.index })
        }) else { return }     // a host with every feature detrec names: nothing to refuse
        let path = copy + "/header.json"
        var header = try JSONDecoder().decode(TraceHeader.self, from: try Data(contentsOf: URL(fileURLWithPath: path)))
        var entry = header.cpuid.first { $0.function == lacking.function && $0.index == lacking.index }
            ?? CPUIDEntry(function: lacking.function, index: lacking.index, flags: 1, eax: 0, ebx: 0, ecx: 0, edx: 0)
        let bit: UInt32 = 1 << lacking.bit
        switch lacking.register {
        case .eax: entry.eax |= bit
        case .ebx: entry.ebx |= bit
        case .ecx: entry.ecx |= bit
        case .edx: entry.edx |= bit
        }
        header.cpuid.removeAll { $0.function == lacking.function && $0.index == lacking.index }
        header.cpuid.append(entry)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(header).write(to: URL(fileURLWithPath: path))
        let r = try detrec(["replay", copy], in: s.path)
        #expect(r.status == 1)
        #expect(r.stderr.contains("needs \(lacking.name)"), "\(r.stderr)")
        #expect(r.stdout.isEmpty, "nothing ran: \(r.stdout)")
    }

    static func checkReplay(_ name: String) throws {
        let s = Scratch("fixture"); defer { s.remove() }
        let trace = traces + "/" + name
        let stdout = try String(contentsOfFile: traces + "/\(name).stdout", encoding: .utf8)
        let status = Int32(try String(contentsOfFile: traces + "/\(name).status", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines))
        #expect(status == 7)
        let before = try snapshot(trace)
        for stdin in [Input.devNull, .closed] {
            let r = try detrec(["replay", trace], stdin: stdin, in: s.path)
            #expect(r.stdout == stdout, """
                The fixture trace \(name) no longer replays as recorded. If the trace format or the \
                emulation changed on purpose, bump traceFormatVersion and re-record the \
                fixture as traces/README.md says.
                \(r)
                """)
            #expect(r.status == status, "\(r)")
            #expect(!r.stderr.contains("diverged"), "\(r.stderr)")
        }
        #expect(try snapshot(trace) == before, "replay modified the trace directory")
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
    static func snapshot(_ dir: String) throws -> [String: String] {
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
