import Glibc
import Testing
@testable import Kernel

/// The guest's descriptor table: Linux's numbering (lowest free), shared
/// open file descriptions, close-on-exec per descriptor.
@Suite struct FileTableTests {
    func file(_ name: String = "f") -> OpenFile { OpenFile(hostFD: nil, path: name) }

    @Test func lowestFreeNumberIsHandedOut() throws {
        var t = FileTable()
        #expect(t.lowestFree() == 0)
        #expect(try t.install(file("a"), closeOnExec: false) == 0)
        #expect(try t.install(file("b"), closeOnExec: false) == 1)
        #expect(try t.install(file("c"), closeOnExec: true) == 2)
        #expect(t.lowestFree() == 3)
        t.remove(1)
        #expect(t.lowestFree() == 1)
        #expect(try t.install(file("d"), closeOnExec: false) == 1)
        #expect(t[1]?.path == "d")
        #expect(t.lowestFree() == 3)
        #expect(t.lowestFree(from: 10) == 10)
        #expect(t.lowestFree(from: -5) == 3, "a negative start counts from 0")
    }

    @Test func installAtAFixedNumberAndFrom() throws {
        var t = FileTable()
        t.install(file("ten"), at: 10, closeOnExec: false)
        #expect(t.lowestFree() == 0)
        #expect(try t.install(file("x"), closeOnExec: false, from: 10) == 11)
        #expect(try t.install(file("y"), closeOnExec: false, from: 5) == 5)
        // Installing at a used number replaces it (dup2).
        t.install(file("replacement"), at: 10, closeOnExec: true)
        #expect(t[10]?.path == "replacement")
        #expect(t.closeOnExec(10))
        #expect(t.entries.count == 3)
    }

    @Test func removeReturnsTheFileOnce() {
        var t = FileTable()
        let f = file("only")
        t.install(f, at: 4, closeOnExec: false)
        #expect(t.remove(4) === f)
        #expect(t.remove(4) == nil)
        #expect(t[4] == nil)
        #expect(t.remove(-1) == nil)
    }

    @Test func closeOnExecIsPerDescriptor() {
        var t = FileTable()
        let shared = file("shared")
        t.install(shared, at: 3, closeOnExec: true)
        t.install(shared, at: 4, closeOnExec: false)
        #expect(t[3] === t[4], "dup shares the open file description")
        #expect(t.closeOnExec(3) && !t.closeOnExec(4))
        t.setCloseOnExec(3, false)
        t.setCloseOnExec(4, true)
        #expect(!t.closeOnExec(3) && t.closeOnExec(4))
        t.setCloseOnExec(99, true)
        #expect(t[99] == nil && !t.closeOnExec(99), "setting a flag on a closed descriptor opens nothing")
    }

    @Test func limitGivesEMFILEAndEINVAL() throws {
        var t = FileTable()
        t.limit = 3
        for _ in 0..<3 { _ = try t.install(file(), closeOnExec: false) }
        #expect(t.lowestFree() == nil)
        #expect(throws: Errno.mfile) { try t.install(file(), closeOnExec: false) }
        // F_DUPFD at or above the limit is EINVAL, as Linux says.
        #expect(throws: Errno.inval) { try t.install(file(), closeOnExec: false, from: 3) }
        t.remove(1)
        #expect(try t.install(file("back"), closeOnExec: false) == 1)
    }

    @Test func hostDescriptorClosesWithTheLastGuestDescriptor() throws {
        var pair: [Int32] = [0, 0]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0)
        defer { close(pair[1]) }
        var t = FileTable()
        do {
            let f = OpenFile(hostFD: pair[0], path: "socket")
            t.install(f, at: 3, closeOnExec: false)
            t.install(f, at: 7, closeOnExec: false)
        }
        func peerSeesEOF() -> Bool {
            var b: UInt8 = 0
            return recv(pair[1], &b, 1, Int32(MSG_DONTWAIT)) == 0
        }
        t.remove(3)
        #expect(!peerSeesEOF(), "closed while descriptor 7 still refers to it")
        t.remove(7)
        #expect(peerSeesEOF(), "the host descriptor outlived the last guest descriptor")
    }
}
