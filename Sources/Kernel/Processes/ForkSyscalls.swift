import KVMUser

/// New processes: fork, vfork and clone without CLONE_THREAD; waiting for
/// them is `WaitSyscalls.swift`.
///
/// A forked child gets its own machine (VM and vCPU) with a copy of the
/// parent's memory. A CLONE_VM child (vfork, posix_spawn's
/// clone(CLONE_VM|CLONE_VFORK)) shares the parent's `MemoryContext`: the
/// same machine, memory and mappings, its registers swapped in and out
/// like another thread's. With CLONE_VFORK the calling thread parks until
/// the child execs or ends (Linux's vfork_done). One vCPU runs at a time,
/// and threads of every process are scheduled together at syscalls, so
/// the trace is still the schedule. CLONE_FS and CLONE_FILES share the
/// working directory, umask and descriptor table by reference
/// (`FileSystemContext`, `SharedFileTable`).
extension ProcessSyscalls {
    static let CSIGNAL: UInt64 = 0xff
    static let CLONE_VM: UInt64 = 0x100, CLONE_FS: UInt64 = 0x200, CLONE_FILES: UInt64 = 0x400
    static let CLONE_SIGHAND: UInt64 = 0x800, CLONE_PIDFD: UInt64 = 0x1000, CLONE_PTRACE: UInt64 = 0x2000
    static let CLONE_VFORK: UInt64 = 0x4000, CLONE_PARENT: UInt64 = 0x8000, CLONE_THREAD: UInt64 = 0x10000
    static let CLONE_SYSVSEM: UInt64 = 0x40000, CLONE_SETTLS: UInt64 = 0x80000, CLONE_PARENT_SETTID: UInt64 = 0x100000
    static let CLONE_CHILD_CLEARTID: UInt64 = 0x200000, CLONE_DETACHED: UInt64 = 0x400000
    static let CLONE_UNTRACED: UInt64 = 0x800000, CLONE_CHILD_SETTID: UInt64 = 0x1000000, CLONE_IO: UInt64 = 0x8000_0000
    static let CLONE_CLEAR_SIGHAND: UInt64 = 0x1_0000_0000, CLONE_INTO_CGROUP: UInt64 = 0x2_0000_0000

    /// Flags with nothing for this function to do: tracing (CLONE_PTRACE,
    /// CLONE_UNTRACED: `traceSyscallExit` decides whether the child is
    /// traced), legacy bits Linux ignores and I/O contexts (scheduling
    /// only). CLONE_SYSVSEM between
    /// processes should share the semaphore adjustments; each process
    /// keeps its own here (IPCNamespace.undo is by pid), which differs only
    /// for SEM_UNDO operations.
    static let inertFlags = CLONE_PTRACE | CLONE_UNTRACED | CLONE_DETACHED | CLONE_SYSVSEM | CLONE_IO

    /// Flags detrec refuses for a new process, each with its name.
    static let refused: [(flag: UInt64, name: String)] = [
        (CLONE_SIGHAND, "CLONE_SIGHAND without CLONE_THREAD (signal handlers shared between processes)"),
        (CLONE_INTO_CGROUP, "CLONE_INTO_CGROUP (cgroups are the host's)"),
        (0x20000, "CLONE_NEWNS"), (0x2000000, "CLONE_NEWCGROUP"), (0x4000000, "CLONE_NEWUTS"),
        (0x8000000, "CLONE_NEWIPC"), (0x10000000, "CLONE_NEWUSER"), (0x20000000, "CLONE_NEWPID"),
        (0x40000000, "CLONE_NEWNET"),
    ]

    /// A new process. `exitSignal` is what the parent gets when it ends
    /// (clone's CSIGNAL byte, clone3's exit_signal).
    static func newProcess(_ c: SyscallCall, flags: UInt64, exitSignal: Int32, stack: UInt64,
                           parentTID: UInt64, childTID: UInt64, tls: UInt64, pidfd: UInt64 = 0) throws -> SyscallOutcome {
        let parent = c.process
        // CLONE_PIDFD stores an int there: a pointer that cannot take it fails the clone first.
        if flags & CLONE_PIDFD != 0 { try c.checkWritable(pidfd, count: 4) }
        if let unsupported = refused.first(where: { flags & $0.flag != 0 }) {
            parent.report("clone with \(unsupported.name) is not supported; returning EINVAL", key: 0x6_0000_0000 | unsupported.flag,
                          rip: c.rip)
            throw Errno.inval
        }
        guard flags & CLONE_PARENT == 0 || parent.parent != nil else {
            parent.report("clone with CLONE_PARENT from the first process (its parent is outside the recording) is not supported; returning EINVAL",
                          key: 0x6_0000_0000 | CLONE_PARENT, rip: c.rip)
            throw Errno.inval
        }
        guard exitSignal >= 0, exitSignal <= 64 else { throw Errno.inval }
        let pm = parent.machine
        let thread = GuestThread(tid: parent.family.allocateID())
        let mm: MemoryContext
        if flags & CLONE_VM != 0 {
            mm = parent.mm
        } else {
            let machine = try MachinePool.take(device: pm.device, cpuid: pm.cpuid)
            mm = MemoryContext(machine: machine, space: parent.space, loaded: nil)
            // The child's MAP_SHARED ranges show the same objects as the parent's.
            mm.sharedViews = parent.mm.sharedViews
        }
        // CLONE_FS and CLONE_FILES share the parent's working directory,
        // umask and descriptor table; without them the child has copies.
        let child = Process(sharing: mm, thread: thread, from: parent,
                            fs: flags & CLONE_FS != 0 ? parent.fs : parent.fs.copy())
        child.pid = thread.tid
        child.exitSignal = exitSignal
        child.parent = flags & CLONE_PARENT != 0 ? parent.parent : parent
        child.fileTable = flags & CLONE_FILES != 0 ? parent.fileTable : SharedFileTable(parent.files)
        child.signals = parent.signals
        child.signals.shared = PendingSignals()
        child.control = parent.control.forked(by: parent.current.tid, child: child.pid)
        if flags & CLONE_CLEAR_SIGHAND != 0 {
            // Handlers go back to the default; ignored signals stay ignored.
            for (signal, action) in child.signals.actions where SignalAction(action).handler > SignalAction.SIG_IGN {
                child.signals.actions[signal] = nil
            }
        }
        if flags & (CLONE_VM | CLONE_VFORK) == CLONE_VM {
            // A child running beside its parent on the same memory must not
            // share its alternate signal stack (copy_process clears it).
            child.signals.altStack = SignalState().altStack
        }
        if flags & CLONE_VM == 0 {
            try copyMemory(from: parent, to: child)
            for (site, kind) in parent.patchedSites where parent.memory.patches[site] != nil {
                if (try? child.memory.insertPatch(site)) != nil { child.patchedSites[site] = kind }
            }
            MemoryAdvice.afterFork(child)
        }
        var regs = pm.registers
        regs.rax = 0
        if stack != 0 { regs.rsp = stack }
        thread.registers = regs
        thread.fsBase = flags & CLONE_SETTLS != 0 ? tls : pm.fsBase
        thread.gsBase = pm.gsBase
        thread.extendedState = try pm.extendedState()
        thread.signalMask = parent.signals.mask
        thread.seccomp = parent.current.seccomp
        thread.credentials = parent.current.credentials
        thread.memoryPolicy = parent.current.memoryPolicy
        thread.altStack = child.signals.altStack
        if flags & CLONE_CHILD_CLEARTID != 0 { thread.clearChildTID = childTID }
        if flags & CLONE_CHILD_SETTID != 0 {
            try? child.memory.writeValue(childTID, UInt32(bitPattern: child.pid))
        }
        if flags & CLONE_PIDFD != 0 {
            // The parent's alone: the child's table was copied before (copy_process), unless CLONE_FILES shares it.
            let fd = try ProcessDescriptors.install(c, child, nonBlocking: false)
            guard fd >= 0 else { return .result(fd) }
            try c.writeValue(pidfd, Int32(fd))
        }
        if flags & CLONE_PARENT_SETTID != 0 { try c.writeValue(parentTID, UInt32(bitPattern: child.pid)) }
        parent.family.processes.append(child)
        guard flags & CLONE_VFORK != 0 else { return .result(Int64(child.pid)) }
        let caller = parent.current
        child.vforkParent = caller
        caller.vforkChild = child
        return vforkWait(child)
    }

    /// The vfork parent parks until its child lets go of the memory. No
    /// signal cuts the wait short (Linux's is killable only); the call
    /// then runs again and `vforkCompleted` returns the child's pid.
    static func vforkWait(_ child: Process) -> SyscallOutcome {
        .park(.killable { child.vforkParent == nil })
    }

    /// A clone, vfork or clone3 that runs again after its CLONE_VFORK
    /// wait: the child's pid, without reading the arguments again (the
    /// child may have written over them).
    static func vforkCompleted(_ c: SyscallCall) -> SyscallOutcome? {
        guard let child = c.process.current.vforkChild else { return nil }
        guard child.vforkParent == nil else { return vforkWait(child) }
        c.process.current.vforkChild = nil
        return .result(Int64(child.pid))
    }

    /// Maps every mapping of the parent in the child and copies the pages
    /// the parent has touched (`GuestMemory.copyContents`), keeping each
    /// page's protection.
    static func copyMemory(from parent: Process, to child: Process) throws {
        // Reserved ranges (demand-mapped memory) stay reserved: only the
        // pages the parent touched get frames in the child.
        for m in parent.space.mappings {
            for part in parent.memory.unreservedParts(m.start, m.end) {
                do { try child.memory.map(part.start, pages: Int((part.end - part.start) / 4096), protection: .rw) } catch { throw Errno.nomem }
            }
        }
        do { try child.memory.copyReservations(of: parent.memory) } catch { throw Errno.nomem }
        child.memory.copyContents(of: parent.memory, ranges: parent.space.mappings.map { ($0.start, $0.end) })
        for m in parent.space.mappings { child.protectPages(m.start, m.end) }
    }
}

extension Process {
    /// The process's memory is its own again, or it has ended: a vfork
    /// parent waiting for it runs on (Linux's mm_release).
    func releaseVforkParent() {
        vforkParent = nil
    }
}
