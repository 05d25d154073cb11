import Glibc
import Kernel
import KVMUser

/// The packet handler: one gdb session over a `GDBConnection`, driving a
/// `ReplaySession`. All-stop. Register and memory writes go into a
/// diversion (Diversion.swift), never into the recorded state; unknown
/// packets get the empty reply.
final class GDBServer {
    let timeline: ReplayTimeline
    var session: ReplaySession { timeline.session }
    /// The path gdb reads the program from (`qXfer:exec-file:read`).
    let executablePath: String
    /// Breakpoints gdb inserted as hardware ones (`Z1`): reported as `hwbreak`.
    private var hardware: Set<UInt64> = []
    private var software: Set<UInt64> = []
    /// A replay that stopped on an error (divergence, damaged trace).
    private(set) var failure: RunStopped?

    enum Ending: Equatable {
        /// The connection closed before any packet: a port probe, not gdb.
        case probe
        case detached
        case killed
        case disconnected
    }

    /// `vFile:` packets.
    let hostIO: HostIO

    /// gdb sent `!` (extended-remote): `run` restarts the replay, and
    /// a kill leaves the stub waiting for it.
    private var extended = false
    /// Killed in extended mode: no program until `vRun`.
    private var killed = false
    /// The connection is in no-ack mode (for a hand-over).
    private(set) var noAck = false

    init(timeline: ReplayTimeline, executablePath: String, hostIO: HostIO = HostIO(stored: [:])) {
        self.timeline = timeline
        self.executablePath = executablePath
        self.hostIO = hostIO
    }

    /// The thread gdb selected with `Hg` for register reads; nil: the one on the vCPU.
    var selected: Int32?

    /// gdb changed registers or memory: the state is a throwaway copy (Diversion.swift).
    var diversion: Diversion?
    /// `O` packets to send before the next reply (a resume's console messages).
    var console: [String] = []

    /// gdb asked for multiprocess extensions: thread ids are `pPID.TID`,
    /// which lets gdb know the pid (`info proc`).
    private var multiprocess = false

    private var pid: Int32 { session.process.pid > 0 ? session.process.pid : session.tid }

    private func format(_ tid: Int32) -> String {
        multiprocess ? "p\(String(pid, radix: 16)).\(String(tid, radix: 16))" : String(tid, radix: 16)
    }

    private var tidHex: String { format(session.currentTID) }

    /// The registers of the selected thread.
    private func snapshot() -> RegisterFile.Snapshot? {
        guard session.termination == nil else { return nil }
        guard let t = selected, t != session.currentTID else { return RegisterFile.Snapshot(machine: session.machine) }
        return session.process.thread(t).map { RegisterFile.Snapshot(thread: $0) }
    }

    /// A thread id from a packet: hex, `-1` (all) or `0` (any), or
    /// `pPID.TID` / `pPID` with multiprocess; nil when malformed.
    private func threadID<S: StringProtocol>(_ s: S) -> Int32? {
        var t = Substring(s)
        if t.first == "p" {
            let parts = t.dropFirst().split(separator: ".", maxSplits: 1)
            guard let p = parts.first, p == "-1" || p == "0" || Int32(p, radix: 16) == pid else { return nil }
            guard parts.count == 2 else { return -1 }
            t = parts[1]
        }
        if t == "-1" { return -1 }
        return Int32(t, radix: 16)
    }

    private func exists(_ tid: Int32) -> Bool {
        session.termination == nil && (tid <= 0 || tid == session.currentTID || session.process.thread(tid) != nil)
    }

    // MARK: the loop

    func serve(_ connection: GDBConnection, resumed: Bool = false) -> Ending {
        var received = resumed
        timeline.interruptRequested = { connection.takeInterrupt() }
        while let item = connection.next() {
            let payload: [UInt8]
            switch item {
            case .ack, .interrupt:
                // An interrupt while stopped: the stop reply is already on its way.
                continue
            case .nack:
                connection.resend()
                continue
            case .corrupt(let p):
                guard connection.noAck else { connection.acknowledge(false); continue }
                payload = p
            case .packet(let p):
                connection.acknowledge(true)
                payload = p
            }
            received = true
            switch handle(payload) {
            case .reply(let r):
                for o in console { connection.send(Array(o.utf8)) }
                console = []
                connection.send(r)
            case .noAckMode:
                connection.send("OK")
                connection.noAck = true
                noAck = true
            case .end(let ending, let reply):
                if let r = reply { connection.send(r) }
                return ending
            }
        }
        return received ? .disconnected : .probe
    }

    enum Action {
        case reply([UInt8])
        case noAckMode
        case end(Ending, reply: [UInt8]?)

        static func text(_ s: String) -> Action { .reply(Array(s.utf8)) }
    }

    // MARK: packets

    func handle(_ payload: [UInt8]) -> Action {
        let p = String(decoding: payload, as: UTF8.self)
        guard let first = p.first else { return .text("") }
        switch first {
        case "?":
            return .text(failure == nil ? stopReply(session.lastStop) : resume(step: false))
        case "g":
            guard let s = snapshot() else { return .text("E01") }
            return .text(RegisterFile.encodeAll(s))
        case "p":
            guard let s = snapshot() else { return .text("E01") }
            guard let n = Packet.number(p.dropFirst()), let r = RegisterFile.encode(Int(clamping: n), s) else {
                return .text("E01")
            }
            return .text(r)
        case "G", "P", "M", "X":
            return .text(write(payload))   // in a diversion (DiversionPackets.swift)
        case "m", "x":
            guard let (address, count) = Packet.range(p.dropFirst()) else { return .text("E01") }
            guard let bytes = readMemory(address, count) else { return .text("E14") }
            // `x` is gdb 16's binary read: `b` and the escaped bytes.
            return first == "m" ? .text(Packet.hex(bytes)) : .reply([UInt8(ascii: "b")] + Packet.escape(bytes))
        case "c", "C":
            return .text(resume(step: false))
        case "s", "S":
            return .text(resume(step: true))
        case "b":
            // bc / bs: reverse continue and reverse step.
            if p == "bc" { return .text(reverse(step: false)) }
            if p == "bs" { return .text(reverse(step: true)) }
            return .text("")
        case "!":
            extended = true
            return .text("OK")
        case "R":
            return .text(restart())
        case "H":
            // Hg selects the thread for register reads; Hc (which thread
            // resumes) has no choice to make: the recording decides.
            guard p.count >= 3, let tid = threadID(p.dropFirst(2)), exists(tid) else { return .text("E01") }
            if p.dropFirst().first == "g" { selected = tid > 0 ? tid : nil }
            return .text("OK")
        case "T":
            guard let tid = threadID(p.dropFirst()), exists(tid) else { return .text("E01") }
            return .text("OK")
        case "Z", "z":
            return .text(breakpointPacket(p))
        case "D":
            return .end(.detached, reply: Array("OK".utf8))
        case "k":
            if extended { killed = true; return .text("OK") }
            return .end(.killed, reply: nil)
        case "q", "Q":
            return query(p)
        case "v":
            return verbose(p)
        default:
            return .text("")
        }
    }

    private func query(_ p: String) -> Action {
        if p.hasPrefix("qSupported") {
            multiprocess = p.contains("multiprocess+")
            return .text((multiprocess ? "multiprocess+;" : "") + "PacketSize=4000;qXfer:features:read+;qXfer:auxv:read+;qXfer:exec-file:read+;qXfer:siginfo:read+;" +
                         "QStartNoAckMode+;swbreak+;hwbreak+;vContSupported+;ReverseContinue+;ReverseStep+")
        }
        if p == "QStartNoAckMode" { return .noAckMode }
        if p == "qC" { return .text("QC" + tidHex) }
        if p == "qfThreadInfo" {
            guard session.termination == nil else { return .text("l") }
            var tids = session.process.threads.map(\.tid)
            if !tids.contains(session.currentTID) { tids.insert(session.currentTID, at: 0) }
            return .text("m" + tids.map(format).joined(separator: ","))
        }
        if p == "qsThreadInfo" { return .text("l") }
        if p.hasPrefix("qAttached") { return .text("1") }
        if p.hasPrefix("qThreadExtraInfo,") {
            let tid = threadID(p.dropFirst(17)) ?? 0
            let blocked = session.process.thread(tid)?.blocked != nil
            return .text(Packet.hex(tid == session.currentTID ? "replaying" : blocked ? "replaying, waiting in a syscall" : "replaying, not scheduled"))
        }
        if p == "qSymbol::" { return .text("OK") }
        if p.hasPrefix("QPassSignals:") || p.hasPrefix("QProgramSignals:") || p.hasPrefix("QDisableRandomization:")
            || p.hasPrefix("QThreadEvents:") || p == "QNonStop:0" {
            return .text("OK")
        }
        if p.hasPrefix("qRcmd,") { return .text(monitor(p.dropFirst(6))) }
        if p.hasPrefix("qXfer:") { return transfer(p) }
        return .text("")
    }

    private func verbose(_ p: String) -> Action {
        if p == "vCont?" { return .text("vCont;c;C;s;S") }
        if p.hasPrefix("vCont;") {
            // One thread: the first action that applies to it decides.
            var step: Bool?
            for action in p.dropFirst(6).split(separator: ";") {
                let parts = action.split(separator: ":", maxSplits: 1)
                if parts.count == 2, let t = threadID(parts[1]), t > 0, t != session.currentTID { continue }
                switch parts[0].first {
                case "s", "S": step = true
                case "c", "C": step = false
                default: continue
                }
                break
            }
            guard let s = step else { return .text("E01") }
            return .text(resume(step: s))
        }
        if p.hasPrefix("vKill") {
            if extended { killed = true; return .text("OK") }
            return .end(.killed, reply: Array("OK".utf8))
        }
        // `run` (extended-remote): the replay again from its start, never the program itself.
        if p.hasPrefix("vRun") { return .text(restart()) }
        if p.hasPrefix("vAttach") { return .text("E01") }
        if p.hasPrefix("vMustReplyEmpty") { return .text("") }
        if p.hasPrefix("vFile:") { return .reply(hostIO.handle(p) ?? []) }
        return .text("")
    }

    // MARK: running

    /// `run`, `R`, `monitor restart`: a fresh replay from the recording's start.
    private func restart() -> String {
        diversion = nil
        do {
            let stop = try timeline.restart()
            failure = nil
            killed = false
            selected = nil
            return stopReply(stop)
        } catch {
            report("replay: cannot restart: \(error)")
            return "E01"
        }
    }

    /// `bc` / `bs`.
    private func reverse(step: Bool) -> String {
        guard failure == nil, !killed else { return "E01" }
        selected = nil
        guard leaveDiversion() else { return "E01" }
        do {
            return stopReply(try step ? timeline.reverseStep() : timeline.reverseContinue())
        } catch let stop as RunStopped {
            failure = stop
            report(stop.message)
            return resume(step: step)
        } catch {
            // A position this replay cannot go back from (`Unreachable`): the
            // replay stays where it was.
            report("reverse execution: \(error)")
            return "E01"
        }
    }

    func report(_ message: String) {
        var line = "detrec: \(message)\n"
        line.withUTF8 { _ = Glibc.write(2, $0.baseAddress, $0.count) }
    }

    private func resume(step: Bool) -> String {
        if killed { return "E01" }
        if failure != nil { return "X09" + (multiprocess ? ";process:\(String(pid, radix: 16))" : "") }
        selected = nil
        if let stop = resumeDiverted(step: step) { return stop }
        do {
            return stopReply(try session.resume(step: step))
        } catch {
            let stop = (error as? RunStopped) ?? RunStopped("replay: \(error)")
            failure = stop
            var line = "detrec: \(stop.message)\n"
            line.withUTF8 { _ = Glibc.write(2, $0.baseAddress, $0.count) }
            // gdb shows it as the program's end; the message is on detrec's stderr.
            return resume(step: step)
        }
    }

    func stopReply(_ stop: StopReason) -> String {
        let process = multiprocess ? ";process:\(String(pid, radix: 16))" : ""
        let r = session.machine.registers
        let thread = "thread:\(tidHex);06:\(Packet.littleEndianHex(r.rbp, bytes: 8));07:\(Packet.littleEndianHex(r.rsp, bytes: 8));10:\(Packet.littleEndianHex(r.rip, bytes: 8));"
        switch stop {
        case .start, .step, .guestTrap:
            return "T05" + thread
        case .historyStart:
            return "T05replaylog:begin;" + thread
        case .breakpoint(let a):
            return "T05" + thread + (hardware.contains(a) && !software.contains(a) ? "hwbreak:;" : "swbreak:;")
        case .watch(let kind, let a):
            let name = kind == .write ? "watch" : kind == .read ? "rwatch" : "awatch"
            return "T05\(name):\(String(a, radix: 16));" + thread
        case .interrupt:
            return "T02" + thread
        case .signal(let signal):
            return "T" + Packet.hex([GDBServer.gdbSignal(signal)]) + thread
        case .exited(.exited(let code)):
            return "W" + Packet.hex([UInt8(truncatingIfNeeded: code)]) + process
        case .exited(.killed(let signal)):
            return "X" + Packet.hex([GDBServer.gdbSignal(signal)]) + process
        }
    }

    /// gdb numbers signals its own way (`enum gdb_signal`); the first few match Linux.
    static func gdbSignal(_ linux: Int32) -> UInt8 {
        let table: [Int32: UInt8] = [
            1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 6, 7: 10, 8: 8, 9: 9, 10: 30, 11: 11, 12: 31, 13: 13, 14: 14, 15: 15,
            17: 20, 18: 19, 19: 17, 20: 18, 21: 21, 22: 22, 23: 16, 24: 24, 25: 25, 26: 26, 27: 27, 28: 28,
            29: 23, 30: 32, 31: 12,
        ]
        if let s = table[linux] { return s }
        if linux == 32 { return 77 }                        // GDB_SIGNAL_REALTIME_32
        if (33...63).contains(linux) { return UInt8(45 + linux - 33) }  // GDB_SIGNAL_REALTIME_33...
        return 143                                          // GDB_SIGNAL_UNKNOWN
    }

    // MARK: memory and breakpoints

    /// As many bytes as can be read from addr (a read may stop
    /// at an unmapped page); nil when none can.
    private func readMemory(_ address: UInt64, _ count: Int) -> [UInt8]? {
        guard session.termination == nil else { return nil }
        if count == 0 { return [] }
        let memory = session.memory
        if let all = try? memory.read(address, count: count, access: .kernel) { return all }
        var out: [UInt8] = []
        var at = address
        while out.count < count {
            let n = min(count - out.count, Int(4096 - at % 4096))
            guard let part = try? memory.read(at, count: n, access: .kernel) else { break }
            out += part
            at += UInt64(n)
        }
        return out.isEmpty ? nil : out
    }

    private func breakpointPacket(_ p: String) -> String {
        let insert = p.first == "Z"
        let fields = p.dropFirst().split(separator: ";", maxSplits: 1)[0].split(separator: ",")
        guard fields.count == 3, let type = Int(fields[0]), let address = Packet.number(fields[1]),
              let kind = Packet.number(fields[2]) else { return "E01" }
        guard session.termination == nil else { return "E01" }
        switch type {
        case 0, 1:
            if insert {
                guard session.insertBreakpoint(address) else { return "E14" }
                if type == 0 { software.insert(address) } else { hardware.insert(address) }
            } else {
                if type == 0 { software.remove(address) } else { hardware.remove(address) }
                if !software.contains(address) && !hardware.contains(address) { session.removeBreakpoint(address) }
            }
            return "OK"
        case 2, 3, 4:
            guard let k = Watchpoints.Kind(rawValue: type) else { return "" }
            if insert {
                return session.watchpoints.insert(kind: k, address: address, length: Int(clamping: kind)) ? "OK" : "E01"
            }
            session.watchpoints.remove(kind: k, address: address, length: Int(clamping: kind))
            return "OK"
        default:
            return ""
        }
    }

    // MARK: qXfer and monitor

    private func transfer(_ p: String) -> Action {
        // qXfer:object:read:annex:offset,length
        let parts = p.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 5, parts[2] == "read", let (offset, length) = Packet.range(parts[4]) else {
            return .text("E00")
        }
        let data: [UInt8]
        switch parts[1] {
        case "features":
            guard parts[3] == "target.xml" else { return .text("E00") }
            data = Array(TargetDescription.xml.utf8)
        case "auxv":
            data = session.process.auxv
        case "exec-file":
            data = Array(executablePath.utf8)
        case "siginfo":
            guard let info = siginfo() else { return .text("E01") }
            data = info
        default:
            return .text("")
        }
        guard offset <= UInt64(data.count) else { return .text("E00") }
        let start = Int(offset)
        let end = min(data.count, start + length)
        return .reply([UInt8(ascii: end == data.count ? "l" : "m")] + Packet.escape(data[start..<end]))
    }

    /// The Linux siginfo_t (128 bytes) for the last stop, as ptrace would show it.
    private func siginfo() -> [UInt8]? {
        let (signal, code, address): (Int32, Int32, UInt64)
        switch session.lastStop {
        case .signal:
            guard let d = session.world.pendingDeath else { return nil }
            (signal, code, address) = (d.signal, d.code, d.address)
        case .interrupt: (signal, code, address) = (SIGINT, 0, 0)                 // SI_USER
        case .breakpoint: (signal, code, address) = (SIGTRAP, 0x80, 0)           // SI_KERNEL, as for int3
        case .watch(_, let a): (signal, code, address) = (SIGTRAP, 4, a)         // TRAP_HWBKPT
        case .start, .step, .guestTrap, .historyStart: (signal, code, address) = (SIGTRAP, 2, 0) // TRAP_TRACE
        case .exited: return nil
        }
        var info = [UInt8](repeating: 0, count: 128)
        func put(_ v: UInt64, at offset: Int, bytes: Int) {
            for i in 0..<bytes { info[offset + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(i))) }
        }
        put(UInt64(UInt32(bitPattern: signal)), at: 0, bytes: 4)
        put(UInt64(UInt32(bitPattern: code)), at: 8, bytes: 4)
        put(address, at: 16, bytes: 8)
        return info
    }

    private func monitor(_ hexCommand: Substring) -> String {
        guard let bytes = Packet.bytes(fromHex: hexCommand) else { return "E01" }
        let command = String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: " \t\n")
        let text: String
        switch command {
        case "when":
            text = "Current event: \(session.eventIndex)\n"
        case "position", "when-position":
            text = "Position: \(session.position)\n"
        case "restart":
            let r = restart()
            text = r == "E01" ? "detrec: the replay could not restart\n" : "Replay restarted at its first instruction (continue, or stepi, to run it).\n"
        case "stats":
            text = "Replays from the start for reverse execution and restarts: \(timeline.replaysStarted); slice checkpoints restored: \(timeline.rollbacks); replay checkpoints restored: \(timeline.restores) (\(timeline.checkpoints.count) live)\(timeline.processes?.costs ?? "")\n"
        case "checkpoint":
            guard session.termination == nil, failure == nil, !killed else { text = "detrec: no replay to checkpoint\n"; break }
            text = timeline.takeCheckpoint(user: true).map { "Checkpoint \($0.id) at \($0.position)\n" } ?? "detrec: no checkpoint could be taken\n"
        case "checkpoints":
            text = timeline.checkpointListing
        case _ where command.hasPrefix("restart "):
            guard let n = Int(String(command.dropFirst(8)).trimmingCharacters(in: " ")) else { text = "detrec: restart N takes a checkpoint number\n"; break }
            do {
                try timeline.restart(checkpoint: n)
                text = "detrec: checkpoint \(n) could not be restored\n"
            } catch {
                text = "detrec: \(error)\n"
            }
        case _ where command.hasPrefix("delete-checkpoint "):
            let n = Int(String(command.dropFirst(18)).trimmingCharacters(in: " ")) ?? -1
            text = timeline.deleteCheckpoint(n) ? "Deleted checkpoint \(n)\n" : "detrec: no checkpoint \(n)\n"
        case "help", "":
            text = "detrec monitor commands:\n  when      the index of the next event to replay\n  position  where the replay stands (event, breakpoint hits, steps)\n  restart   replay again from the start of the recording\n  stats     how many replays going back has cost\n  checkpoint           fork a replay checkpoint here\n  checkpoints          list them\n  restart N            go back (or forth) to checkpoint N\n  delete-checkpoint N  end checkpoint N\n"
        default:
            text = "detrec: unknown monitor command '\(command)' (try 'monitor help')\n"
        }
        return Packet.hex(text)
    }
}

// MARK: hand-over to a replayer restored from a checkpoint (Checkpoints/)

extension GDBServer {
    /// What gdb's session is beside the replay: sent to the restored process.
    func exportState() -> [UInt8] {
        var w = WireWriter()
        w.put(noAck); w.put(extended); w.put(multiprocess)
        w.put(software.count); for a in software.sorted() { w.put(a) }
        w.put(hardware.count); for a in hardware.sorted() { w.put(a) }
        return w.bytes
    }

    func importState(_ r: inout WireReader) throws {
        noAck = try r.bool(); extended = try r.bool(); multiprocess = try r.bool()
        software = []; hardware = []
        for _ in 0..<(try r.count()) { software.insert(try r.word()) }
        for _ in 0..<(try r.count()) { hardware.insert(try r.word()) }
        killed = false
        selected = nil
        failure = nil
    }

    /// The reply to the packet the hand-over was made for.
    func reply(afterTakeOver job: ReplayTimeline.TakeOver) -> String {
        do {
            let stop = try timeline.perform(job)
            if case .stay(let id) = job { return Packet.hex("Restarted at checkpoint \(id): \(session.position)\n") }
            return stopReply(stop ?? .step)
        } catch let stop as RunStopped {
            failure = stop
            report(stop.message)
            return resume(step: false)
        } catch {
            report("reverse execution (restored from a checkpoint): \(error)")
            return "E01"
        }
    }
}

private extension String {
    func trimmingCharacters(in set: String) -> String {
        let chars = Set(set)
        var s = Substring(self)
        while let f = s.first, chars.contains(f) { s = s.dropFirst() }
        while let l = s.last, chars.contains(l) { s = s.dropLast() }
        return String(s)
    }
}
