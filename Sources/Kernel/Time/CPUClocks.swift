/// The CPU-time clocks a clock id can name (clock_getcpuclockid,
/// pthread_getcpuclockid): ~pid << 3 | which, with bit 2 for a thread, and
/// ~fd << 3 | 3 for a dynamic clock behind a descriptor. The pids and tids
/// the guest puts there are the recording's, which the host does not know
/// (or that name some other host process), and every recorded thread runs
/// on detrec's one host thread, so a clock of a recorded process or thread
/// becomes detrec's own (pid 0): its CPU time, which is all the
/// recording's. A thread clock of another process's thread is EINVAL, as
/// Linux's; a pid the recording never had is the host's to answer.
enum CPUClocks {
    static func hostClock(_ c: SyscallCall, _ id: Int32) throws(Errno) -> Int32 {
        guard id < 0 else { return id }
        let which = id & 7
        if which == 7 { throw .inval }
        if which == 3 {
            // A clock descriptor: the guest's number becomes detrec's host one.
            guard let file = c.process.files[~(id >> 3)] else { throw .inval }
            return ~((file.hostFD ?? 0) << 3) | 3
        }
        let pid = ~(id >> 3)
        guard pid != 0 else { return id }
        let family: ProcessFamily = c.process.family
        let own = ~Int32(0) << 3 | which
        if which & 4 != 0 {
            if c.process.threads.contains(where: { $0.tid == pid }) { return own }
            if family.allocated(pid) { throw .inval }
            return id
        }
        if family.processes.contains(where: { $0.pid == pid && $0.zombieStatus == nil }) { return own }
        if family.allocated(pid) { throw .inval }
        return id
    }
}
