import Foundation
import Testing
@testable import Trace

@Suite struct FormatterTests {
    let f = EventFormatter(syscallName: { $0 == 0 ? "read" : $0 == 2 ? "open" : "syscall_\($0)" })

    @Test func textLines() {
        let events = everyKindEvents()
        let read = f.text(events[1], index: 1)
        #expect(read.hasPrefix("#1 tid=100 syscall read(0)"))
        #expect(read.contains("args=0x3 0x7ffd0000 0x200 0x0 0x0 0x0"))
        #expect(read.contains("result=512 (0x200)"))
        #expect(read.contains("writes=1 (512 bytes, first at 0x7ffd0000)"))
        let open = f.text(events[2], index: 2)
        #expect(open.contains("open(2)"))
        #expect(open.contains("result=-2 (-ENOENT)"))
        #expect(open.contains("writes=0"))
        #expect(f.text(.exit(tid: 3, status: 1), index: 9) == "#9 tid=3 exit status=1")
        #expect(f.text(events[5], index: 5).contains("signal=11 code=1 rip=0x401234 address=0xdeadbeef"))
        #expect(f.text(events[0], index: 0) == "#0 tid=100 processStart atRandom=000102030405060708090a0b0c0d0e0f")
        for (i, e) in events.enumerated() { #expect(!f.text(e, index: i).contains("\n")) }
        let unknownErrno = EventFormatter(syscallName: { _ in "x" }, errnoName: { _ in nil })
        #expect(unknownErrno.text(events[2], index: 2).contains("result=-2 (-errno 2)"))
    }

    @Test func jsonObjects() throws {
        for (i, e) in everyKindEvents().enumerated() {
            let line = f.json(e, index: i)
            #expect(!line.contains("\n"))
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            #expect(object["kind"] as? String == e.kindName)
            #expect(object["index"] as? Int == i)
        }
        let big = Event.syscall(SyscallRecord(tid: 1, ticks: 0, rip: 0, number: 0, args: [0, 0, 0, 0, 0, 0], result: 100_000,
                                              writes: [.bytes(address: 0x10, data: Array(repeating: 0xAB, count: 100_000))]))
        let line = f.json(big, index: 0)
        #expect(line.count < 1000)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        let writes = try #require(object["writes"] as? [[String: Any]])
        #expect(writes.first?["length"] as? Int == 100_000)
        #expect(writes.first?["data"] as? String == String(repeating: "ab", count: 64))
        let errno = try #require(try JSONSerialization.jsonObject(with: Data(f.json(everyKindEvents()[2], index: 2).utf8)) as? [String: Any])
        #expect(errno["errno"] as? Int == 2)
        #expect(errno["name"] as? String == "open")
    }

    @Test func headerJSONRoundTrips() throws {
        let json = f.headerJSON(sampleHeader())
        #expect(!json.contains("\n"))
        #expect(try JSONDecoder().decode(TraceHeader.self, from: Data(json.utf8)) == sampleHeader())
        #expect(f.headerJSON(sampleHeader(), pretty: true).contains("\n"))
    }
}
