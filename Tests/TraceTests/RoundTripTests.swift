import Foundation
import Testing
@testable import Trace

@Suite struct RoundTripTests {
    @Test func everyEventKindAndHeader() throws {
        let tmp = TempDir(); defer { tmp.cleanup() }
        let dir = tmp.sub("trace")
        let events = everyKindEvents()
        let w = try writeTrace(dir, events)
        #expect(w.eventCount == events.count)

        let r = try TraceReader(directory: dir)
        #expect(r.header == sampleHeader())
        #expect(r.directory == dir)
        #expect(r.nextEventIndex == 0)
        #expect(r.ending == nil)
        var got: [Event] = []
        while let e = try r.next() {
            got.append(e)
            #expect(r.nextEventIndex == got.count)
        }
        #expect(got == events)
        #expect(r.ending == .complete)
        #expect(try r.next() == nil)   // stays at the end
    }

    @Test func manyBlocksAndBigEvents() throws {
        let tmp = TempDir(); defer { tmp.cleanup() }
        let dir = tmp.sub("t")
        var events: [Event] = [.processStart(tid: 1, atRandom: Array(repeating: 9, count: 16))]
        for i in 0..<300 { events.append(readSyscall(i % 50)) }
        // Bigger than blockLimit: gets a block of its own, between small events.
        var big = [UInt8](repeating: 0x5A, count: 1 << 20)
        for i in stride(from: 0, to: big.count, by: 4099) { big[i] = UInt8(truncatingIfNeeded: i) }
        events.insert(.syscall(SyscallRecord(tid: 1, ticks: 1, rip: 2, number: 0, args: [0, 0, 0, 0, 0, 0],
                                             result: Int64(big.count), writes: [.bytes(address: 0x1000, data: big)])),
                      at: 150)
        try writeTrace(dir, events, blockLimit: 2048)
        let (got, ending, error) = try readEverything(dir)
        #expect(error == nil)
        #expect(ending == .complete)
        #expect(got == events)

        let map = BlockMap(try readBytes(dir + "/events"))
        #expect(map.starts.count > 5)
        // The big event's block holds it alone.
        let bigBlock = try #require(map.firstEvents.firstIndex(of: 150))
        #expect(map.eventCounts[bigBlock] == 1)
        // Blocks tile the file; the last is the end marker.
        #expect(map.eventCounts.last == 0)
        #expect(map.firstEvents.last == events.count)
    }

    /// A format 3 header (no checksum yet) without `extra` still loads.
    @Test func headerWithoutExtraStillDecodes() throws {
        let tmp = TempDir(); defer { tmp.cleanup() }
        let dir = tmp.sub("t")
        var header = sampleHeader()
        header.extra = [:]
        header.formatVersion = 3
        try writeTrace(dir, [])
        var object = try #require(try JSONSerialization.jsonObject(with: Data(readBytes(dir + "/header.json"))) as? [String: Any])
        object["extra"] = nil
        object["formatVersion"] = 3
        object["headerChecksum"] = nil
        try writeBytes(dir + "/header.json", Array(try JSONSerialization.data(withJSONObject: object)))
        let r = try TraceReader(directory: dir)
        #expect(r.header == header)
    }

    @Test func emptyFinishedTrace() throws {
        let tmp = TempDir(); defer { tmp.cleanup() }
        let dir = tmp.sub("t")
        try writeTrace(dir, [])
        let (got, ending, error) = try readEverything(dir)
        #expect(got.isEmpty && error == nil)
        #expect(ending == .complete)
    }

    @Test func unfinishedTraceIsTruncatedNotAnError() throws {
        let tmp = TempDir(); defer { tmp.cleanup() }
        let dir = tmp.sub("t")
        let events = (0..<20).map { readSyscall($0) }
        try writeTrace(dir, events, blockLimit: 100, finish: false)
        let size = try readBytes(dir + "/events").count
        let (got, ending, error) = try readEverything(dir)
        #expect(error == nil)
        #expect(got == events)
        #expect(ending == .truncated(afterEvent: 20, byteOffset: UInt64(size)))
    }

    /// A writer dropped without finish() (recorder gave up) still leaves its buffered events.
    @Test func droppedWriterFlushesButWritesNoEndMarker() throws {
        let tmp = TempDir(); defer { tmp.cleanup() }
        let dir = tmp.sub("t")
        do {
            let w = try TraceWriter(directory: dir, header: sampleHeader())
            try w.append(.exit(tid: 1, status: 3))
        }
        let (got, ending, error) = try readEverything(dir)
        #expect(error == nil)
        #expect(got == [.exit(tid: 1, status: 3)])
        if case .truncated(afterEvent: 1, _) = ending {} else { Issue.record("ending \(String(describing: ending))") }
    }
}

@Suite struct WriterTests {
    @Test func refusesNonEmptyDirectoryAcceptsEmptyOneAndCreatesParents() throws {
        let tmp = TempDir(); defer { tmp.cleanup() }
        try writeBytes(tmp.sub("junk"), [1])
        #expect(throws: TraceError.directoryNotEmpty(path: tmp.path)) {
            try TraceWriter(directory: tmp.path, header: sampleHeader())
        }
        try FileManager.default.createDirectory(atPath: tmp.sub("empty"), withIntermediateDirectories: false)
        _ = try TraceWriter(directory: tmp.sub("empty"), header: sampleHeader())
        let deep = tmp.sub("a/b/c")
        _ = try TraceWriter(directory: deep, header: sampleHeader())
        #expect(FileManager.default.fileExists(atPath: deep + "/header.json"))
        #expect(FileManager.default.fileExists(atPath: deep + "/events"))
        #expect(FileManager.default.fileExists(atPath: deep + "/files"))
        #expect(!FileManager.default.fileExists(atPath: deep + "/header.json.tmp"))
    }

    @Test func appendAfterFinishThrows() throws {
        let tmp = TempDir(); defer { tmp.cleanup() }
        let w = try writeTrace(tmp.sub("t"), [.exit(tid: 1, status: 0)])
        #expect(throws: TraceError.writerFinished(path: tmp.sub("t"))) { try w.append(.exit(tid: 1, status: 0)) }
        try w.finish()   // second finish is a no-op
    }

    @Test func rejectsEventsTheFormatCannotHoldAndStaysUsable() throws {
        let tmp = TempDir(); defer { tmp.cleanup() }
        let dir = tmp.sub("t")
        let w = try TraceWriter(directory: dir, header: sampleHeader())
        try w.append(.exit(tid: 1, status: 1))
        let fiveArgs = Event.syscall(SyscallRecord(tid: 1, ticks: 0, rip: 0, number: 1, args: [1, 2, 3, 4, 5],
                                                   result: 0, writes: [.bytes(address: 1, data: [1])]))
        #expect(throws: TraceError.self) { try w.append(fiveArgs) }
        let badSHA = Event.syscall(SyscallRecord(tid: 1, ticks: 0, rip: 0, number: 1, args: [0, 0, 0, 0, 0, 0], result: 0,
                                                 writes: [.stored(address: 0, length: 1, sha256: "ABC", offset: 0)]))
        #expect(throws: TraceError.self) { try w.append(badSHA) }
        try w.append(.exit(tid: 2, status: 2))
        #expect(w.eventCount == 2)
        try w.finish()
        let (got, ending, _) = try readEverything(dir)
        #expect(got == [.exit(tid: 1, status: 1), .exit(tid: 2, status: 2)])
        #expect(ending == .complete)
    }

    /// Events stay buffered until blockLimit or flush(); each block is written whole.
    @Test func buffersUntilBlockLimitOrFlush() throws {
        let tmp = TempDir(); defer { tmp.cleanup() }
        let dir = tmp.sub("t")
        let w = try TraceWriter(directory: dir, header: sampleHeader(), blockLimit: 1000)
        func size() throws -> Int { try readBytes(dir + "/events").count }
        try w.append(readSyscall(10))
        #expect(try size() == 0)
        try w.append(readSyscall(880))   // crosses the limit: both go out as one block
        let afterFirst = try size()
        #expect(afterFirst > 0)
        #expect(BlockMap(try readBytes(dir + "/events")).eventCounts == [2])
        try w.append(.exit(tid: 1, status: 0))
        #expect(try size() == afterFirst)
        try w.flush()
        try w.flush()   // nothing buffered: no empty block
        #expect(BlockMap(try readBytes(dir + "/events")).eventCounts == [2, 1])
        #expect(w.eventCount == 3)
    }

    @Test func refusesForeignFormatVersion() throws {
        let tmp = TempDir(); defer { tmp.cleanup() }
        var h = sampleHeader()
        h.formatVersion = traceFormatVersion + 1
        #expect(throws: TraceError.self) { try TraceWriter(directory: tmp.sub("t"), header: h) }
    }

    @Test func totalBytesMatchesDisk() throws {
        let tmp = TempDir(); defer { tmp.cleanup() }
        let dir = tmp.sub("t")
        let w = try TraceWriter(directory: dir, header: sampleHeader(), blockLimit: 500)
        try w.storeFile(Array(repeating: 7, count: 10_000))
        try w.storeFile(Array(repeating: 7, count: 10_000))  // deduplicated: not counted again
        for i in 0..<100 { try w.append(readSyscall(i)) }
        try w.finish()
        var onDisk: UInt64 = 0
        let fm = FileManager.default
        for name in try fm.subpathsOfDirectory(atPath: dir) {
            let attrs = try fm.attributesOfItem(atPath: dir + "/" + name)
            if attrs[.type] as? FileAttributeType == .typeRegular { onDisk += (attrs[.size] as? UInt64) ?? 0 }
        }
        #expect(w.totalBytes == onDisk)
    }
}

@Suite struct StoredFileTests {
    @Test func dedupeAndVerification() throws {
        let tmp = TempDir(); defer { tmp.cleanup() }
        let dir = tmp.sub("t")
        let w = try TraceWriter(directory: dir, header: sampleHeader())
        let a = Array("ELF contents".utf8)
        let b = (0..<100_000).map { UInt8(truncatingIfNeeded: $0) }
        let ha = try w.storeFile(a)
        #expect(ha == SHA256.hex(a))
        #expect(try w.storeFile(a) == ha)
        let hb = try w.storeFile(b)
        try w.finish()
        let names = try FileManager.default.contentsOfDirectory(atPath: dir + "/files").sorted()
        #expect(names == [ha, hb].sorted())

        let r = try TraceReader(directory: dir)
        #expect(try r.storedFile(sha256: ha) == a)
        #expect(try r.storedFile(sha256: hb) == b)

        let missing = SHA256.hex([42])
        #expect(throws: TraceError.missingStoredFile(sha256: missing)) { try r.storedFile(sha256: missing) }
        #expect(throws: TraceError.self) { try r.storedFile(sha256: "../header.json") }

        // Tamper with a stored file: a fresh reader notices.
        var tampered = b
        tampered[500] ^= 1
        try writeBytes(dir + "/files/" + hb, tampered)
        let r2 = try TraceReader(directory: dir)
        #expect(throws: TraceError.storedFileMismatch(sha256: hb)) { try r2.storedFile(sha256: hb) }
    }

    @Test func storeFileAtPath() throws {
        let tmp = TempDir(); defer { tmp.cleanup() }
        let src = tmp.sub("exe")
        try writeBytes(src, [0x7f, 0x45, 0x4c, 0x46])
        let w = try TraceWriter(directory: tmp.sub("t"), header: sampleHeader())
        let stored = try w.storeFile(atPath: src)
        #expect(stored == StoredFile(path: src, sha256: SHA256.hex([0x7f, 0x45, 0x4c, 0x46]), size: 4))
    }
}
