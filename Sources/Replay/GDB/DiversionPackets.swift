import Kernel
import KVMUser

/// gdb's writes (`M`, `X`, `P`, `G`) and the resumes they lead to: the
/// first write starts a diversion (Diversion.swift), the next resume of
/// the recording ends it.
extension GDBServer {
    /// `M addr,len:hex`, `X addr,len:binary`, `P n=hex`, `G hex`.
    func write(_ payload: [UInt8]) -> String {
        guard let kind = payload.first else { return "E01" }
        guard session.termination == nil else { return "E01" }
        // Only the thread on the vCPU can run a call; another's registers
        // are the emulated kernel's, which a diversion does not copy.
        if kind == UInt8(ascii: "P") || kind == UInt8(ascii: "G"), let t = selected, t != session.currentTID { return "E01" }
        let text = String(decoding: payload, as: UTF8.self)
        switch kind {
        case UInt8(ascii: "M"), UInt8(ascii: "X"):
            guard let colon = payload.firstIndex(of: UInt8(ascii: ":")),
                  let (address, count) = Packet.range(String(decoding: payload[1..<colon], as: UTF8.self)) else { return "E01" }
            let data: [UInt8]
            if kind == UInt8(ascii: "M") {
                guard let d = Packet.bytes(fromHex: String(decoding: payload[(colon + 1)...], as: UTF8.self)) else { return "E01" }
                data = d
            } else {
                data = Array(payload[(colon + 1)...])   // unescaped by the decoder
            }
            guard data.count == count else { return "E01" }
            // gdb probes `X` with an empty write.
            if count == 0 { return "OK" }
            // Unmapped: nothing changes, and no diversion starts for it.
            guard (try? session.memory.read(address, count: count, access: .kernel)) != nil else { return "E14" }
            guard enterDiversion() else { return "E01" }
            do {
                try session.memory.write(address, data, access: .kernel)
            } catch {
                return "E14"
            }
            diversion?.noteWrite(address, count: count)
            return "OK"
        case UInt8(ascii: "P"):
            let parts = text.dropFirst().split(separator: "=", maxSplits: 1)
            guard parts.count == 2, let n = Packet.number(parts[0]), let bytes = Packet.bytes(fromHex: parts[1]) else { return "E01" }
            var s = RegisterFile.Snapshot(machine: session.machine)
            guard RegisterFile.write(Int(clamping: n), bytes, into: &s) else { return "E01" }
            return apply(s)
        default:
            var s = RegisterFile.Snapshot(machine: session.machine)
            guard RegisterFile.writeAll(text.dropFirst(), into: &s) else { return "E01" }
            return apply(s)
        }
    }

    /// Registers for the thread on the vCPU, in a diversion.
    private func apply(_ s: RegisterFile.Snapshot) -> String {
        let before = RegisterFile.Snapshot(machine: session.machine)
        // gdb writes back what it read (`G` after a call): no change, no diversion.
        if diversion == nil, s.registers == before.registers, s.fsBase == before.fsBase, s.gsBase == before.gsBase, s.xsave == before.xsave {
            return "OK"
        }
        guard enterDiversion() else { return "E01" }
        let m = session.machine
        m.registers = s.registers
        m.fsBase = s.fsBase
        m.gsBase = s.gsBase
        if let x = s.xsave, x != before.xsave {
            do { try m.setExtendedState(x) } catch { return "E01" }
        }
        return "OK"
    }

    /// Saves the replay state before the first change.
    private func enterDiversion() -> Bool {
        if diversion != nil { return true }
        do {
            diversion = try Diversion(session: session)
            return true
        } catch {
            report("cannot start a diversion: \(error)")
            return false
        }
    }

    /// A resume in a diversion: its stop reply, or nil when the diversion
    /// ended (restored, the message queued) and the replay resumes as recorded.
    func resumeDiverted(step: Bool) -> String? {
        guard let d = diversion else { return nil }
        do {
            switch try d.resume(session, step: step) {
            case .stopped(let stop):
                return stopReply(stop)
            case .ended(let message):
                diversion = nil
                if let m = message { console.append("O" + Packet.hex(m)) }
                return nil
            }
        } catch {
            diversion = nil
            report("the diversion could not be undone: \(error)")
            return "E01"
        }
    }

    /// Before going backwards: the recorded state again. False when it
    /// could not be restored.
    func leaveDiversion() -> Bool {
        guard let d = diversion else { return true }
        diversion = nil
        do {
            if let m = try d.end(session) { console.append("O" + Packet.hex(m)) }
            return true
        } catch {
            report("the diversion could not be undone: \(error)")
            return false
        }
    }
}
