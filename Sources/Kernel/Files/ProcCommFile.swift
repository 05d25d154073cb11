/// write(2) on /proc/<pid>/comm or task/<tid>/comm (fs/proc/base.c
/// comm_write): the first 15 bytes written, newline and all, name that
/// thread when it is of the writer's own thread group (glibc's
/// pthread_setname_np for another thread); EINVAL otherwise. The name is
/// the emulation's (`ProcessControl.names`), not the memfd's bytes: the
/// trace carries which thread was named (8 bytes: pid, tid), because
/// replay does not know the descriptor is a comm file (docs/trace-format.md).
enum ProcCommFile {
    static func location(of file: OpenFile) -> ProcFS.Location? {
        guard let l = file.procLocation, l.rest == ["comm"], l.selfLink == nil else { return nil }
        return l
    }

    /// Recording: the write on a comm file.
    static func write(_ c: SyscallCall, _ l: ProcFS.Location, _ bytes: [UInt8]) throws -> SyscallOutcome {
        let process = c.process
        let outcome = try c.hostOutcome { effects throws(Errno) -> Int64 in
            guard let (owner, thread) = ProcFS.owner(l, in: process.family) else { throw .srch }
            guard owner === process else { throw .inval }
            let tid = ProcFS.taskID(owner, thread)
            effects.carry(Bytes.i32(owner.pid) + Bytes.i32(tid))
            return Int64(bytes.count)
        }
        try named(c, outcome, bytes: bytes)
        return .result(outcome.result)
    }

    /// Both halves: gives the thread the outcome carries its new name.
    static func named(_ c: SyscallCall, _ outcome: HostOutcome, bytes: [UInt8]) throws {
        guard outcome.result >= 0, let raw = outcome.carried.first else { return }
        guard raw.count == 8 else {
            throw RunStopped("the trace is damaged: a /proc/<pid>/comm write carries \(raw.count) bytes, not 8")
        }
        let pid = Int32(bitPattern: Bytes.u32(raw, at: 0)), tid = Int32(bitPattern: Bytes.u32(raw, at: 4))
        guard pid == c.process.pid else {
            throw RunStopped("replay diverged: the recording named a thread of process \(pid) from process \(c.process.pid)")
        }
        // set_task_comm keeps what fits before the first NUL.
        let name = bytes.prefix(15).prefix { $0 != 0 }
        c.process.control.names[tid] = Array(name)
    }
}
