import KVMUser

/// New processes: fork (clone without CLONE_VM), and waiting for them.
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
            for part in m.pageTableParts(from: m.start, to: m.end) {
                child.memory.protect(part.start, pages: Int((part.end - part.start) / 4096), protection: part.protection)
            }
        }
    }

    /// The wait status of a process that ended: exit code or signal.
    static func waitStatus(exited code: Int32) -> Int32 { (code & 0xff) << 8 }
    static func waitStatus(killedBy signal: Int32) -> Int32 { signal & 0x7f }

    static let WNOHANG: Int32 = 1, WUNTRACED: Int32 = 2, WCONTINUED: Int32 = 8

    /// wait4: the first child (of those `target` names) that ended, or that
    /// stopped or continued when the options ask for it, each reported once.
    static func wait4(_ c: SyscallCall) throws -> Int64 {
        let target = c.int(0), statusAddress = c.arg(1), options = c.int(2)
        // __WNOTHREAD, __WALL, __WCLONE change nothing for one-thread children.
        guard options & ~(WNOHANG | WUNTRACED | WCONTINUED | 0x2000_0000 | 0x4000_0000 | Int32(bitPattern: 0x8000_0000)) == 0
        else { throw Errno.inval }
        let p = c.process
        // Every process of the recording shares one process group.
        func named(_ child: Process) -> Bool { child.parent === p && (target <= 0 || child.pid == target) }
        func status(_ child: Process) -> Int32? {
            if let s = child.zombieStatus { return s }
            switch child.jobReport {
            case .stopped(let signal)? where options & WUNTRACED != 0: return signal << 8 | 0x7f
            case .continued? where options & WCONTINUED != 0: return 0xffff
            default: return nil
            }
        }
        let children = p.family.processes.filter(named)
        guard !children.isEmpty else { throw Errno(10) }    // ECHILD
        if let child = children.first(where: { status($0) != nil }), let s = status(child) {
            if statusAddress != 0 { try c.writeValue(statusAddress, s) }
            if c.arg(3) != 0 { try c.write(c.arg(3), [UInt8](repeating: 0, count: 144)) }
            if child.zombieStatus != nil {
                p.family.processes.removeAll { $0 === child }
            } else {
                child.jobReport = nil
            }
            return Int64(child.pid)
        }
        if options & WNOHANG != 0 { return 0 }
        throw MustBlock { p.family.processes.contains { named($0) && status($0) != nil } }
    }
}
