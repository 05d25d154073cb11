import Testing
@testable import Replay
import KVMUser

/// Positions cross process boundaries in checkpoint messages: every path
/// segment (plain runs, steps, runs through watched-page faults) must come
/// back as it went, and a damaged message must be an error, not a trap.
@Suite struct PositionWireTests {
    @Test func everyPathSegmentRoundTrips() throws {
        var p = ReplayPosition(event: 42)
        p.breakpoint = 0x401000
        p.hits = 3
        p.steps = 2
        p.exact = false
        p.path = [.run([0x401000, 0x402000]), .steps(5),
                  .watched([0x403000], [0x7000: .writes, 0x9000: .accesses], faults: 4),
                  .toFault([], [0x7000: .accesses])]
        var w = WireWriter()
        w.put(p)
        var r = WireReader(w.bytes)
        #expect(try r.position() == p)
        #expect(r.isAtEnd)
        var short = WireReader(Array(w.bytes.dropLast(3)))
        #expect(throws: WireError.self) { try short.position() }
    }
}
