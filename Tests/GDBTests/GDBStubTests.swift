import Foundation
import Glibc
import Testing
@testable import Replay

/// The framing, without a replay.
@Suite struct PacketTests {
    @Test func framesWithChecksum() {
        #expect(String(decoding: Packet.frame(Array("OK".utf8)), as: UTF8.self) == "$OK#9a")
        #expect(String(decoding: Packet.frame([]), as: UTF8.self) == "$#00")
    }

    @Test func escapesBinary() {
        let raw: [UInt8] = [0x24, 0x23, 0x7d, 0x2a, 0x41]
        let escaped = Packet.escape(raw)
        #expect(escaped == [0x7d, 0x04, 0x7d, 0x03, 0x7d, 0x5d, 0x7d, 0x0a, 0x41])
        #expect(Packet.unescape(escaped) == raw)
    }

    @Test func decodesStream() {
        var d = PacketDecoder()
        d.feed(Array("+$g#67-\u{03}$m0,4#fd$bad#00$part".utf8))
        #expect(d.next() == .ack)
        #expect(d.next() == .packet(Array("g".utf8)))
        #expect(d.next() == .nack)
        #expect(d.next() == .interrupt)
        #expect(d.next() == .packet(Array("m0,4".utf8)))
        #expect(d.next() == .corrupt(Array("bad".utf8)))
        #expect(d.next() == nil)
        d.feed(Array("ial#".utf8))
        #expect(d.next() == nil)
        d.feed(Array("00".utf8))
        #expect(d.next() == .corrupt(Array("partial".utf8)))
    }

    @Test func parsesNumbers() {
        #expect(Packet.range("401000,10")! == (0x401000, 16))
        #expect(Packet.range("zz,1") == nil)
        #expect(Packet.range("1") == nil)
        #expect(Packet.number("ffffffffffffffff") == UInt64.max)
        #expect(Packet.number("1ffffffffffffffff") == nil)
        #expect(GDBOptions.parseListen("127.0.0.1:1234")! == ("127.0.0.1", 1234))
        #expect(GDBOptions.parseListen(":99")! == ("127.0.0.1", 99))
        #expect(GDBOptions.parseListen("[::1]:5")! == ("::1", 5))
        #expect(GDBOptions.parseListen("host:port") == nil)
    }

    @Test func describesRegisters() {
        #expect(RegisterFile.layout.count == 60)
        #expect(RegisterFile.layout[16].name == "rip")
        #expect(RegisterFile.layout[57].name == "orig_rax")
        #expect(RegisterFile.layout[58].name == "fs_base")
        #expect(TargetDescription.xml.contains("<reg name=\"gs_base\" bitsize=\"64\" type=\"int\" regnum=\"59\"/>"))
    }
}

/// A real replay under the stub, driven with raw packets and with gdb.
@Suite(.serialized) struct StubTests {
    func fixture() throws -> Fixture { try Fixture.shared.get() }

    @Test func acknowledgementsAndChecksums() throws {
        let f = try fixture()
        let stub = try StubProcess(f)
        do {
            let c = try RawClient(port: stub.port)
            c.send("qSupported:multiprocess+;swbreak+")
            #expect(c.byte() == UInt8(ascii: "+"))
            let supported = try #require(c.packet())
            #expect(supported.contains("PacketSize="))
            #expect(supported.contains("qXfer:features:read+"))
            c.sendRaw("+")
            c.sendRaw("$g#00")                       // wrong checksum
            #expect(c.byte() == UInt8(ascii: "-"))
            c.send("vMustReplyEmpty")
            #expect(c.byte() == UInt8(ascii: "+"))
            #expect(c.packet() == "")
            c.sendRaw("-")                           // "say that again"
            #expect(c.packet() == "")
            c.send("QStartNoAckMode")
            #expect(c.byte() == UInt8(ascii: "+"))
            #expect(c.packet() == "OK")
            c.sendRaw("+")
            c.send("?")
            #expect(c.peek() == UInt8(ascii: "$"))   // no ack any more
            #expect((c.packet() ?? "").contains("thread:p"))   // multiprocess thread ids: pPID.TID
            #expect(c.ask("Hgp0.0") == "OK")
            #expect(c.ask("Hgp1.1") == "E01")      // no such process
            c.send("D")
        }
        #expect(stub.wait() == 0)
    }

    @Test func registersMemoryBreakpointsAndExit() throws {
        let f = try fixture()
        let bump = try #require(f.symbols["bump"])
        let counter = try #require(f.symbols["counter"])
        let stub = try StubProcess(f)
        do {
            let c = try RawClient(port: stub.port)
            #expect(c.ask("QStartNoAckMode") == "OK")
            #expect((c.ask("?") ?? "").hasPrefix("T05thread:"))
            let g = try #require(c.ask("g"))
            #expect(g.count == 1120)
            #expect(g.allSatisfy { $0.isHexDigit || $0 == "x" })
            #expect(c.ask("qNoSuchPacket") == "")
            #expect(c.ask("m0,8") == "E14")
            #expect((c.ask("mzz") ?? "").hasPrefix("E"))
            #expect(c.ask("G00") == "E01")
            #expect(c.ask("M0,1:00") == "E14")     // unmapped (writes go into a diversion: DiversionTests)
            let xml = try #require(c.ask("qXfer:features:read:target.xml:0,3fff"))
            #expect(xml.contains("i386:x86-64") && xml.contains("orig_rax"))

            let original = try #require(c.ask("m\(hex(bump)),4"))
            #expect(c.ask("Z0,\(hex(bump)),1") == "OK")
            #expect(c.ask("m\(hex(bump)),4") == original)   // the int3 is hidden
            let stop = try #require(c.ask("c"))
            #expect(stop.hasPrefix("T05") && stop.contains("swbreak:;"))
            #expect(rip(c) == bump)
            let when = try #require(c.ask("qRcmd," + Array("when".utf8).map { String(format: "%02x", $0) }.joined()))
            #expect(String(decoding: hexBytes(when), as: UTF8.self).hasPrefix("Current event: "))

            // Continue from the breakpoint: the next call stops there again.
            #expect((c.ask("vCont;c") ?? "").contains("swbreak"))
            #expect(rip(c) == bump)

            // A write watchpoint on counter: the next write stops right after it.
            #expect(c.ask("Z2,\(hex(counter)),4") == "OK")
            #expect(c.ask("z0,\(hex(bump)),1") == "OK")
            let watch = try #require(c.ask("c"))
            #expect(watch.hasPrefix("T05watch:\(hex(counter));"))
            #expect(c.ask("m\(hex(counter)),4") == "03000000")  // 1 + 2
            #expect(c.ask("z2,\(hex(counter)),4") == "OK")

            let before = try #require(rip(c))
            #expect((c.ask("s") ?? "").hasPrefix("T05"))
            #expect(rip(c) != before)
            #expect(c.ask("c") == "W00")
            #expect(c.ask("g") == "E01")
            c.send("k")
        }
        #expect(stub.wait() == 0)
    }

    @Test func interruptStopsARunningReplay() throws {
        let f = try fixture()
        let stub = try StubProcess(f)
        do {
            let c = try RawClient(port: stub.port)
            #expect(c.ask("QStartNoAckMode") == "OK")
            // Stop in main's spin loop, well before the end.
            let bump = try #require(f.symbols["bump"])
            #expect(c.ask("Z0,\(hex(bump)),1") == "OK")
            for _ in 0..<3 { #expect((c.ask("c") ?? "").contains("swbreak")) }
            #expect(c.ask("z0,\(hex(bump)),1") == "OK")
            c.send("c")
            usleep(30_000)
            c.sendRaw("\u{03}")
            let stop = try #require(c.packet())
            #expect(stop.hasPrefix("T02") || stop == "W00")
            #expect(c.ask("c") == "W00")
            c.send("D")
        }
        #expect(stub.wait() == 0)
    }

    @Test func gdbBreaksContinuesAndPrints() throws {
        let f = try fixture()
        let stub = try StubProcess(f)
        let out = try run("/usr/bin/env", ["gdb", "-nx", "-batch",
                                           "-ex", "target remote 127.0.0.1:\(stub.port)",
                                           "-ex", "break bump", "-ex", "continue", "-ex", "continue",
                                           "-ex", "print v", "-ex", "print counter", "-ex", "delete",
                                           "-ex", "continue", f.executable]).output
        #expect(out.contains("Breakpoint 1, bump (v=2)"), "\(out)")
        #expect(out.contains("$1 = 2"), "\(out)")
        #expect(out.contains("$2 = 1"), "\(out)")
        #expect(out.contains("exited normally"), "\(out)")
        #expect(stub.wait() == 0)
    }
}
