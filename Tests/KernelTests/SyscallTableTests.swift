import Foundation
import Testing
@testable import Kernel

/// The syscall descriptions: one per number, agreeing with the SYS
/// constants, carrying the facts the run loop derives its lists from, and
/// rendered into docs/syscalls.md.
@Suite struct SyscallTableTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    /// `public static let NAME: UInt64 = N` from SyscallNumbers.swift.
    static func numbers() throws -> [(String, UInt64)] {
        let text = try String(contentsOf: root.appendingPathComponent("Sources/Kernel/Syscalls/SyscallNumbers.swift"), encoding: .utf8)
        return text.split(separator: "\n").compactMap { line in
            let words = line.split(whereSeparator: { " :=".contains($0) })
            guard let i = words.firstIndex(of: "let"), words.count >= i + 3, let n = UInt64(words[i + 3]) else { return nil }
            return (String(words[i + 1]), n)
        }
    }

    @Test func theTableAndTheSyscallNumbersAgree() throws {
        let numbers = try Self.numbers()
        #expect(numbers.count > 300)
        for (name, n) in numbers {
            #expect(SyscallNames.name(n) == name, "SYS.\(name) is \(n), which the table calls \(SyscallNames.name(n))")
        }
        let named = (0..<UInt64(SyscallNames.count)).filter { SyscallNames.linux($0) != nil }
        #expect(named.count == numbers.count, "every named number has a SYS constant and back")
        let table = SyscallTable.linux
        for n in named {
            let d = try #require(table.description(n))
            #expect(d.number == n && d.name == SyscallNames.name(n))
        }
        #expect(table.description(UInt64(SyscallNames.count)) == nil)
        #expect(SyscallNames.name(100_000) == "syscall_100000")
    }

    @Test func everySyscallIsRegisteredOnce() {
        let twice = SyscallTable.linux.registeredTwice.map { SyscallNames.name($0) }
        #expect(twice.isEmpty, "registered more than once: \(twice)")
    }

    @Test func everyHandlerHasASupportAndEveryMissingOneIsRefused() {
        for case let d? in SyscallTable.linux.descriptions {
            if d.handler == nil {
                guard case .refused(let reason) = d.support else {
                    Issue.record("\(d.name) has no handler but says \(d.support)")
                    continue
                }
                #expect(!reason.isEmpty)
            } else if case .refused = d.support {
                // A handler that refuses on purpose (rseq): it says why.
                #expect(!SyscallTable.note(d).isEmpty)
            }
        }
    }

    @Test func theRunLoopsListsComeFromTheDescriptions() {
        let t = SyscallTable.linux
        // What the run loop kept in lists before: all still there.
        for n in [SYS.read, SYS.readv, SYS.pread64, SYS.write, SYS.writev, SYS.recvfrom, SYS.recvmsg, SYS.sendto,
                  SYS.sendmsg, SYS.accept, SYS.accept4, SYS.wait4, SYS.waitid, SYS.futex, SYS.connect, SYS.ioctl] {
            #expect(t.restartRule(n) == .withSARestart, "\(SyscallNames.name(n)) restarts under SA_RESTART")
        }
        for n in [SYS.read, SYS.readv, SYS.pread64, SYS.poll, SYS.ppoll, SYS.select, SYS.pselect6, SYS.nanosleep,
                  SYS.clock_nanosleep, SYS.wait4, SYS.pause, SYS.futex, SYS.accept, SYS.accept4, SYS.recvfrom,
                  SYS.recvmsg, SYS.connect, SYS.epoll_wait, SYS.epoll_pwait, SYS.write] {
            #expect(t.waitsByNature(n), "\(SyscallNames.name(n)) can wait")
        }
        for n in [SYS.write, SYS.writev, SYS.pwrite64, SYS.pwritev, SYS.sendto, SYS.sendmsg] {
            #expect(t.producesOutput(n))
        }
        // Linux's rules for the waits that do not restart after a handler.
        #expect(t.restartRule(SYS.nanosleep) == .restartBlock)
        #expect(t.restartRule(SYS.poll) == .restartBlock)
        #expect(t.restartRule(SYS.select) == .unlessHandled)
        #expect(t.restartRule(SYS.rt_sigsuspend) == .unlessHandled)
        #expect(t.restartRule(SYS.epoll_wait) == .never)
        #expect(t.restartRule(SYS.rt_sigtimedwait) == .never)
        #expect(!t.waitsByNature(SYS.getpid) && !t.producesOutput(SYS.read))
    }

    @Test func docsSyscallsMdIsCurrent() throws {
        let file = Self.root.appendingPathComponent("docs/syscalls.md")
        let text = try String(contentsOf: file, encoding: .utf8)
        #expect(text == SyscallTable.linux.supportMarkdown(), "run `detrec syscalls --markdown > docs/syscalls.md`")
        #expect(SyscallTable.linux.supportLines().count == SyscallTable.linux.descriptions.compactMap { $0 }.count)
    }

    // MARK: outcomes

    let world = StubWorld()

    func outcome(_ process: Kernel.Process, _ number: UInt64, _ args: UInt64...) throws -> SyscallOutcome {
        let handler = try #require(SyscallTable.linux.handler(number))
        return try handler(SyscallCall(number: number, args: args + [UInt64](repeating: 0, count: 6 - args.count),
                                       rip: 0x401000, process: process, world: world))
    }

    @Test func handlersSayWhatTheRunLoopDoesWithTheCall() throws {
        let p = try makeProcess()
        try p.map(Mapping(start: 0x10000, end: 0x11000, protection: .rw))
        guard case .yield = try outcome(p, SYS.sched_yield) else { Issue.record("sched_yield yields"); return }
        guard case .exit(7, false) = try outcome(p, SYS.exit, 0x107) else { Issue.record("exit(7) of a thread"); return }
        guard case .exit(3, true) = try outcome(p, SYS.exit_group, 3) else { Issue.record("exit_group(3)"); return }
        // FUTEX_WAIT on a word that holds the expected value parks; another value is EAGAIN.
        guard case .park(.futex(0x10000, 0xffff_ffff, nil)) = try outcome(p, SYS.futex, 0x10000, 0, 0) else {
            Issue.record("futex wait parks"); return
        }
        #expect(throws: Errno.again) { try outcome(p, SYS.futex, 0x10000, 0, 1) }
        // A plain handler's value is its result, through the table's plain view too.
        #expect(try outcome(p, SYS.getpid).result == Int64(p.pid))
        #expect(try SyscallTable.linux[SYS.getpid]?(SyscallCall(number: SYS.getpid, args: [0, 0, 0, 0, 0, 0], rip: 0,
                                                                  process: p, world: world)) == Int64(p.pid))
    }

    @Test func aHugeFutexTimeoutSaturatesInsteadOfTrapping() throws {
        let p = try makeProcess()
        try p.map(Mapping(start: 0x10000, end: 0x11000, protection: .rw))
        // struct timespec { INT64_MAX, 999999999 } at 0x10100.
        try p.memory.write(0x10100, Bytes.u64(UInt64(Int64.max)) + Bytes.u64(999_999_999), access: .kernel)
        for op: UInt64 in [0, 9] {   // FUTEX_WAIT (relative), FUTEX_WAIT_BITSET (absolute)
            guard case .park(.futex(_, _, let deadline?)) = try outcome(p, SYS.futex, 0x10000, op, 0, 0x10100, 0, 0xffff_ffff) else {
                Issue.record("futex op \(op) parks"); continue
            }
            #expect(deadline.isNever)
        }
    }

    @Test func durationsSaturate() {
        #expect(Nanoseconds(seconds: Int64.max, nanoseconds: 999_999_999).isForever)
        #expect(Nanoseconds(seconds: 1, nanoseconds: 5).value == 1_000_000_005)
        #expect((Nanoseconds.forever + .seconds(1)).isForever)
        #expect((Nanoseconds.seconds(1) - .seconds(2)) == .zero)
        #expect(Nanoseconds.forever.pollMilliseconds == -1)
        #expect(Nanoseconds(1).pollMilliseconds == 1)
        #expect(Nanoseconds.milliseconds(Int64.max).isForever)
        #expect((MonotonicInstant.now() + .forever).isNever)
        #expect(MonotonicInstant(doubleSeconds: .infinity).isNever && MonotonicInstant(doubleSeconds: .nan).isNever)
        #expect(MonotonicInstant.never.remaining().isForever)
    }
}
