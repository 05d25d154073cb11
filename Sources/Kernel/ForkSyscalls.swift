import KVMUser

/// New processes: fork (clone without CLONE_VM); waiting for them is
/// `WaitSyscalls.swift`.
/// A child gets its own machine (VM and vCPU) with a copy of the parent's
/// memory; one vCPU runs at a time, and threads of every process are
/// scheduled together at syscalls, so the trace is still the schedule.
extension ProcessSyscalls {
    static let CLONE_SETTLS: UInt64 = 0x80000, CLONE_PARENT_SETTID: UInt64 = 0x100000
    static let CLONE_CHILD_CLEARTID: UInt64 = 0x200000, CLONE_CHILD_SETTID: UInt64 = 0x1000000

    static func fork(_ c: SyscallCall, flags: UInt64, stack: UInt64, parentTID: UInt64, childTID: UInt64, tls: UInt64) throws -> Int64 {
        let parent = c.process
        let pm = parent.machine
        let machine = try UserMachine(device: pm.device, cpuid: pm.cpuid)
        let child = Process(machine: machine, executablePath: parent.executablePath)
        child.family = parent.family
        child.parent = parent
        child.pid = parent.family.allocateID()
        child.uid = parent.uid
        child.credentials = parent.credentials
        child.space = parent.space
        child.files = parent.files
        child.signals = parent.signals
        child.signals.shared = PendingSignals()
        child.auxv = parent.auxv
        child.control = parent.control.forked(by: parent.current.tid, child: child.pid)
        child.argv = parent.argv
        child.envp = parent.envp
        try copyMemory(from: parent, to: child)
        for (site, length) in parent.timestampSites where parent.memory.patches[site] != nil {
            if (try? child.memory.insertPatch(site)) != nil { child.timestampSites[site] = length }
        }
        let thread = GuestThread(tid: child.pid)
        child.threads = [thread]
        child.current = thread
        var regs = pm.registers
        regs.rax = 0
        if stack != 0 { regs.rsp = stack }
        machine.registers = regs
        machine.fsBase = flags & CLONE_SETTLS != 0 ? tls : pm.fsBase
        machine.gsBase = pm.gsBase
        try machine.setExtendedState(try pm.extendedState())
        if flags & CLONE_CHILD_CLEARTID != 0 { thread.clearChildTID = childTID }
        if flags & CLONE_CHILD_SETTID != 0 {
            try? child.memory.writeValue(childTID, UInt32(bitPattern: child.pid))
        }
        if flags & CLONE_PARENT_SETTID != 0 { try c.writeValue(parentTID, UInt32(bitPattern: child.pid)) }
        parent.family.processes.append(child)
        return Int64(child.pid)
    }

    /// Copies every mapped page (skipping pages that read as zero, which a
    /// fresh mapping already is), keeping each page's protection.
    static func copyMemory(from parent: Process, to child: Process) throws {
        var page = [UInt8](repeating: 0, count: 4096)
        for m in parent.space.mappings {
            do { try child.memory.map(m.start, pages: m.pages, protection: .rw) } catch { throw Errno.nomem }
            var at = m.start
            while at < m.end {
                let readable = page.withUnsafeMutableBytes { b in
                    (try? parent.memory.read(into: b, from: at, access: .kernel)) != nil
                }
                if readable && page.contains(where: { $0 != 0 }) {
                    try? child.memory.write(at, page, access: .kernel)
                }
                at += 4096
            }
            child.protectPages(m.start, m.end)
        }
    }
}
