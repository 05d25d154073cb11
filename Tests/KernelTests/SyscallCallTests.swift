import Glibc
import KVMUser
import Testing
@testable import Kernel

/// Decoding a guest's syscall arguments through `SyscallCall`, on a real
/// guest address space: int truncation, sizes, bad pointers, paths; and
/// handlers that must refuse bad arguments before doing anything on the host.
@Suite struct SyscallCallTests {
    static let rw: UInt64 = 0x10000        // two read-write pages
    static let ro: UInt64 = 0x20000        // one read-only page
    static let none: UInt64 = 0x30000      // one PROT_NONE page
    static let unmapped: UInt64 = 0x40000

    let process: Kernel.Process
    let world = StubWorld()

    init() throws {
        process = try makeProcess()
        try process.map(Mapping(start: Self.rw, end: Self.rw + 0x2000, protection: .rw))
        try process.map(Mapping(start: Self.ro, end: Self.ro + 0x1000, protection: .read))
        try process.map(Mapping(start: Self.none, end: Self.none + 0x1000, protection: .none))
    }

    func call(_ number: UInt64 = 0, _ args: UInt64...) -> SyscallCall {
        SyscallCall(number: number, args: args + [UInt64](repeating: 0, count: 6 - args.count),
                    rip: 0x401000, process: process, world: world)
    }

    func put(_ address: UInt64, _ bytes: [UInt8]) throws {
        try process.memory.write(address, bytes, access: .kernel)
    }

    // MARK: integers

    @Test func intArgumentsLookAtTheLow32BitsOnly() {
        let c = call(0, 0xffff_ffff_0000_0003, 0x0000_0000_ffff_ffff, 0x8000_0000, 0xdead_beef_ffff_ff9c, 0)
        #expect(c.int(0) == 3)
        #expect(c.int(1) == -1)
        #expect(c.int(2) == Int32.min)
        #expect(c.int(3) == -100, "AT_FDCWD with garbage in the high half")
        #expect(c.long(1) == 0xffff_ffff)
        #expect(call(0, UInt64.max).long(0) == -1)
        #expect(c.arg(3) == 0xdead_beef_ffff_ff9c)
    }

    @Test func negativeSizesAreEINVAL() throws {
        #expect(try call(0, 0).size(0) == 0)
        #expect(try call(0, 4096).size(0) == 4096)
        #expect(try call(0, UInt64(Int64.max)).size(0) == Int.max)
        #expect(throws: Errno.inval) { try call(0, UInt64.max).size(0) }
        #expect(throws: Errno.inval) { try call(0, 0x8000_0000_0000_0000).size(0) }
        #expect(throws: Errno.inval) { try call(0, UInt64(bitPattern: -4096)).size(0) }
    }

    // MARK: descriptors

    @Test func descriptorArguments() throws {
        let f = OpenFile(hostFD: nil, path: "/dev/stdout")
        process.files.install(f, at: 1, closeOnExec: false)
        #expect(try call(0, 1).file(0) === f)
        #expect(try call(0, 0x7_0000_0001).file(0) === f, "the high half of an fd is ignored")
        #expect(throws: Errno.badf) { try call(0, 0).file(0) }
        #expect(throws: Errno.badf) { try call(0, UInt64.max).file(0) }
        #expect(try call(0, UInt64(bitPattern: -100)).directory(0) == nil)
        #expect(try call(0, 0xffff_ff9c).directory(0) == nil, "AT_FDCWD passed as a 32-bit int")
        #expect(try call(0, 1).directory(0) === f)
        #expect(throws: Errno.badf) { try call(0, 5).directory(0) }
    }

    // MARK: pointers

    @Test func badPointersAreEFAULT() throws {
        try put(Self.rw, Array("0123456789".utf8))
        let c = call()
        #expect(try c.read(Self.rw, count: 10) == Array("0123456789".utf8))
        #expect(try c.read(Self.ro, count: 16).count == 16)
        let bad: [(UInt64, Int, String)] = [
            (0, 1, "NULL"),
            (1, 10, "the first page"),
            (16, 10, "the first page"),
            (Self.unmapped, 1, "unmapped"),
            (Self.none, 1, "PROT_NONE"),
            (Self.rw + 0x2000 - 4, 8, "running off the end of a mapping"),
            (Self.rw + 0x1ff0, 0x20, "straddling the end"),
            (0xffff_8000_0000_0000, 8, "the kernel half"),
            (0x0000_7fff_ffff_f000, 8, "past the last user page"),
            (UInt64.max - 2, 10, "wrapping around"),
            (UInt64.max, 1, "the last byte"),
        ]
        for (address, count, what) in bad {
            #expect(throws: Errno.fault, "read \(what)") { try c.read(address, count: count) }
            #expect(throws: Errno.fault, "check \(what)") { try c.checkWritable(address, count: count) }
            #expect(throws: Errno.fault, "write \(what)") { try c.write(address, [UInt8](repeating: 1, count: count)) }
        }
        #expect(throws: Errno.fault) { let _: UInt64 = try c.readValue(Self.rw + 0x1ffc) }
        #expect(try c.read(Self.rw, count: 0) == [], "an empty range is fine anywhere it starts")
    }

    @Test func readOnlyMemoryIsReadableButNotWritable() throws {
        let c = call()
        try put(Self.ro, [9, 9, 9, 9])
        #expect(throws: Errno.fault) { try c.checkWritable(Self.ro, count: 1) }
        #expect(throws: Errno.fault) { try c.write(Self.ro, [1, 2]) }
        #expect(throws: Errno.fault) { try c.writeValue(Self.ro, UInt32(7)) }
        #expect(try c.read(Self.ro, count: 4) == [9, 9, 9, 9], "a refused write changed memory")
        // A write that starts in writable memory and runs into read-only memory changes nothing either.
        try process.map(Mapping(start: Self.ro - 0x1000, end: Self.ro, protection: .rw))
        try put(Self.ro - 4, [0, 0, 0, 0])
        #expect(throws: Errno.fault) { try c.write(Self.ro - 4, [1, 1, 1, 1, 1, 1, 1, 1]) }
        #expect(try c.read(Self.ro - 4, count: 8) == [0, 0, 0, 0, 9, 9, 9, 9])
    }

    // MARK: strings and paths

    @Test func paths() throws {
        try put(Self.rw, Array("/etc/hostname".utf8) + [0])
        #expect(try call(0, Self.rw).path(0) == "/etc/hostname")
        try put(Self.rw + 100, [0])
        #expect(try call(0, Self.rw + 100).path(0) == "", "an empty path decodes; the syscall decides (ENOENT)")
        #expect(throws: Errno.fault) { try call(0, 0).path(0) }
        #expect(throws: Errno.fault) { try call(0, 8).path(0) }
        #expect(throws: Errno.fault) { try call(0, Self.unmapped).path(0) }
        #expect(throws: Errno.fault) { try call(0, Self.none).path(0) }
        #expect(throws: Errno.fault) { try call(0, 0xffff_ffff_ffff_fff0).path(0) }
    }

    @Test func stringsCrossPagesAndStopAtTheMappingEnd() throws {
        // Across the page boundary inside the mapping.
        let text = Array("crossing/a/page/boundary".utf8)
        try put(Self.rw + 0x1000 - 10, text + [0])
        #expect(try call(0, Self.rw + 0x1000 - 10).path(0) == "crossing/a/page/boundary")
        // Ending exactly at the end of the mapping, NUL in the last byte.
        try put(Self.rw + 0x2000 - 4, Array("abc".utf8) + [0])
        #expect(try call(0, Self.rw + 0x2000 - 4).path(0) == "abc")
        // No NUL before the mapping ends: EFAULT, not ENAMETOOLONG.
        try put(Self.rw + 0x2000 - 4, Array("abcd".utf8))
        #expect(throws: Errno.fault) { try call(0, Self.rw + 0x2000 - 4).path(0) }
    }

    @Test func overLongPathsAreENAMETOOLONG() throws {
        // PATH_MAX is 4096 bytes including the NUL: 4095 characters fit, 4096 do not.
        let page2 = Self.rw
        try put(page2, [UInt8](repeating: UInt8(ascii: "a"), count: 4095) + [0])
        #expect(try call(0, page2).path(0).count == 4095)
        try put(page2, [UInt8](repeating: UInt8(ascii: "b"), count: 5000) + [0])
        #expect(throws: Errno.nametoolong) { try call(0, page2).path(0) }
        try put(page2, [UInt8](repeating: UInt8(ascii: "c"), count: 8190) + [0])
        #expect(throws: Errno.nametoolong) { try call(0, page2).path(0) }
    }

    @Test func aPathOfExactlyPATH_MAXCharactersIsENAMETOOLONG() throws {
        // Linux's getname: strncpy_from_user(..., PATH_MAX) == PATH_MAX is ENAMETOOLONG.
        try put(Self.rw, [UInt8](repeating: UInt8(ascii: "d"), count: 4096) + [0])
        #expect(throws: Errno.nametoolong) { try call(0, Self.rw).path(0) }
    }

    // MARK: through the handlers

    func handle(_ number: UInt64, _ args: UInt64...) throws -> Int64 {
        let handler = try #require(SyscallTable.linux[number], "no handler for \(SyscallNames.name(number))")
        let c = SyscallCall(number: number, args: args + [UInt64](repeating: 0, count: 6 - args.count),
                            rip: 0x401000, process: process, world: world)
        return try handler(c)
    }

    func expectErrno(_ errno: Errno, _ number: UInt64, _ args: UInt64..., sourceLocation: SourceLocation = #_sourceLocation) {
        let handler = SyscallTable.linux[number]
        #expect(handler != nil, sourceLocation: sourceLocation)
        guard let handler else { return }
        let c = SyscallCall(number: number, args: args + [UInt64](repeating: 0, count: 6 - args.count),
                            rip: 0x401000, process: process, world: world)
        let before = world.hostCalls
        do {
            let r = try handler(c)
            #expect(r == errno.result, "\(SyscallNames.name(number)) returned \(r), not \(errno)", sourceLocation: sourceLocation)
        } catch let e as Errno {
            #expect(e == errno, "\(SyscallNames.name(number)): \(e), not \(errno)", sourceLocation: sourceLocation)
        } catch {
            Issue.record("\(SyscallNames.name(number)) threw \(error)", sourceLocation: sourceLocation)
        }
        #expect(world.hostCalls == before, "\(SyscallNames.name(number)) went to the host with bad arguments", sourceLocation: sourceLocation)
    }

    @Test func handlersRefuseBadArgumentsBeforeTheHost() throws {
        process.files.install(OpenFile(hostFD: nil, path: "/dev/stdin"), at: 0, closeOnExec: false)
        process.files.install(OpenFile(hostFD: nil, path: "/dev/stdout", echo: 1), at: 1, closeOnExec: false)
        try put(Self.rw + 0x800, [UInt8](repeating: UInt8(ascii: "p"), count: 5000) + [0])

        expectErrno(.fault, SYS.write, 1, 1, 10)
        expectErrno(.fault, SYS.read, 0, 16, 10)
        expectErrno(.fault, SYS.read, 0, Self.ro, 10)          // read into read-only memory
        expectErrno(.fault, SYS.write, 1, Self.rw, UInt64.max)  // a "negative" count: access_ok fails first, as on Linux
        expectErrno(.badf, SYS.write, 9, Self.rw, 1)
        expectErrno(.badf, SYS.read, 0x1_0000_0009, Self.rw, 1)
        expectErrno(.fault, SYS.open, 0, 0, 0)
        expectErrno(.fault, SYS.openat, UInt64(bitPattern: -100), 8, 0, 0)
        expectErrno(.nametoolong, SYS.open, Self.rw + 0x800, 0, 0)
        expectErrno(.nametoolong, SYS.stat, Self.rw + 0x800, Self.rw)
        expectErrno(.fault, SYS.stat, Self.rw + 0x1fff, Self.ro)   // "" is fine; the buffer is not writable
        expectErrno(.fault, SYS.pipe, Self.ro)
        expectErrno(.fault, SYS.clock_gettime, 0, 40)
        expectErrno(.inval, SYS.mmap, 0, 0, 3, 0x22, UInt64.max, 0)          // length 0
        expectErrno(.inval, SYS.mmap, 0, 4096, 3, 0x22, UInt64.max, 1)       // unaligned offset
        expectErrno(.inval, SYS.munmap, Self.rw + 1, 4096)
        expectErrno(.nomem, SYS.mprotect, Self.unmapped, 4096, 1)
        expectErrno(.inval, SYS.readv, 0, Self.rw, UInt64(bitPattern: -1))
        expectErrno(.fault, SYS.readv, 0, 32, 1)
    }

    @Test func writeToStdoutIsEchoedOnReplay() throws {
        process.files.install(OpenFile(hostFD: nil, path: "/dev/stdout", echo: 1), at: 1, closeOnExec: false)
        try put(Self.rw, Array("hello\n".utf8))
        world.hostResult = 6
        #expect(try handle(SYS.write, 1, Self.rw, 6) == 6)
        #expect(world.hostCalls == 1)
        #expect(world.echoed.count == 1 && world.echoed.first?.0 == 1 && world.echoed.first?.1 == Array("hello\n".utf8))
        // A short write echoes only what was written.
        world.hostResult = 2
        #expect(try handle(SYS.write, 1, Self.rw, 6) == 2)
        #expect(world.echoed.last?.1 == Array("he".utf8))
    }

    @Test func intArgumentsThroughHandlers() throws {
        // close(0x1_0000_0005) closes descriptor 5: the kernel reads an int.
        process.files.install(OpenFile(hostFD: nil, path: "x"), at: 5, closeOnExec: false)
        #expect(try handle(SYS.close, 0x1_0000_0005) == 0)
        #expect(process.files[5] == nil)
        expectErrno(.badf, SYS.close, 0x1_0000_0005)
        // dup returns the lowest free number.
        process.files.install(OpenFile(hostFD: nil, path: "y"), at: 0, closeOnExec: false)
        #expect(try handle(SYS.dup, 0) == 1)
        #expect(try handle(SYS.dup2, 0, 0x1_0000_0009) == 9)
        #expect(process.files[9] === process.files[0])
    }
}
