import Glibc
import KVMUser

/// /proc/<pid>/{comm,stat,statm,status} and their task/<tid> twins, as
/// fs/proc/array.c, base.c and task_mmu.c print them, from the emulated
/// process: its own names, groups, umask, signals and memory (recording
/// only, as every generated file: replay reads what the guest read).
extension ProcFS {
    /// A thread's comm as /proc shows it (`Process.threadName`).
    static func comm(_ process: Process, tid: Int32) -> String {
        String(decoding: process.threadName(tid), as: UTF8.self)
    }

    /// A thread's state as get_task_state shows it: parked in a call that
    /// waits, it sleeps (S; D for a wait no signal ends, such as a vfork
    /// parent's), so a program can tell a thread of its own is waiting.
    static func state(_ process: Process, tid: Int32) -> String {
        if process.zombieStatus != nil { return "Z (zombie)" }
        if process.stoppedBy != nil { return "T (stopped)" }
        guard let blocked = task(process, tid)?.blocked else { return "R (running)" }
        return blocked.condition.interruptible ? "S (sleeping)" : "D (disk sleep)"
    }

    static func ppid(_ process: Process) -> Int32 { process.parent?.pid ?? (process.adoptedByInit ? 1 : getppid()) }

    /// fs/proc/array.c proc_pid_status, in Linux 6's order.
    static func status(_ process: Process, tid: Int32) -> String {
        let thread = task(process, tid) ?? process.current
        let memory = ProcMemoryFigures(process)
        var ignored: UInt64 = 0, caught: UInt64 = 0
        for (signal, action) in process.signals.actions {
            let handler = Bytes.u64(action, at: 0)
            if handler == 1 { ignored |= 1 << UInt64(signal - 1) } else if handler > 1 { caught |= 1 << UInt64(signal - 1) }
        }
        let k = thread.credentials
        func ids(_ v: [UInt32]) -> String { v.map { String($0) }.joined(separator: "\t") }
        // array.c: each group, then one space (even with none).
        let groups = k.groups.map { String($0) }.joined(separator: " ") + " "
        func kB(_ pages: UInt64) -> String {
            let s = String(pages * 4)
            return String(repeating: " ", count: max(0, 8 - s.count)) + s + " kB"
        }
        let umask = String(process.umask, radix: 8)
        let queued = process.threads.reduce(process.signals.shared.instances) { $0 + $1.pending.instances }
        let usage = thread.usage
        return """
        Name:\t\(comm(process, tid: tid))
        Umask:\t\(String(repeating: "0", count: max(0, 4 - umask.count)) + umask)
        State:\t\(state(process, tid: tid))
        Tgid:\t\(process.pid)
        Ngid:\t0
        Pid:\t\(tid)
        PPid:\t\(ppid(process))
        TracerPid:\t\(thread.trace?.tracer?.pid ?? 0)
        Uid:\t\(ids([k.uid, k.euid, k.suid, k.fsuid]))
        Gid:\t\(ids([k.gid, k.egid, k.sgid, k.fsgid]))
        FDSize:\t\(process.files.limit)
        Groups:\t\(groups)
        NStgid:\t\(process.pid)
        NSpid:\t\(tid)
        NSpgid:\t\(process.processGroup)
        NSsid:\t\(process.session)
        Kthread:\t0
        VmPeak:\t\(kB(memory.size))
        VmSize:\t\(kB(memory.size))
        VmLck:\t\(kB(memory.locked))
        VmPin:\t\(kB(0))
        VmHWM:\t\(kB(memory.resident))
        VmRSS:\t\(kB(memory.resident))
        RssAnon:\t\(kB(memory.residentAnonymous))
        RssFile:\t\(kB(memory.residentFile))
        RssShmem:\t\(kB(memory.residentShared))
        VmData:\t\(kB(memory.data))
        VmStk:\t\(kB(memory.stack))
        VmExe:\t\(kB(memory.text))
        VmLib:\t\(kB(memory.libraries))
        VmPTE:\t\(kB(memory.pageTables))
        VmSwap:\t\(kB(0))
        HugetlbPages:\t\(kB(0))
        CoreDumping:\t0
        THP_enabled:\t\(process.control.transparentHugePagesDisabled ? 0 : 1)
        untag_mask:\t0xffffffffffffffff
        Threads:\t\(process.threads.count)
        SigQ:\t\(queued)/\(limit(process, 11).soft)
        SigPnd:\t\(hex(thread.pending.set, width: 16))
        ShdPnd:\t\(hex(process.signals.shared.set, width: 16))
        SigBlk:\t\(hex(mask(of: thread, in: process), width: 16))
        SigIgn:\t\(hex(ignored, width: 16))
        SigCgt:\t\(hex(caught, width: 16))
        CapInh:\t\(hex(k.inheritable, width: 16))
        CapPrm:\t\(hex(k.permitted, width: 16))
        CapEff:\t\(hex(k.effective, width: 16))
        CapBnd:\t\(hex(k.bounding, width: 16))
        CapAmb:\t\(hex(k.ambient, width: 16))
        NoNewPrivs:\t\(process.control.noNewPrivileges ? 1 : 0)
        Seccomp:\t\(thread.seccomp.mode.rawValue)
        Seccomp_filters:\t\(thread.seccomp.filters?.chainLength ?? 0)
        \(hostStatusLines.speculation)
        Cpus_allowed:\t1
        Cpus_allowed_list:\t0
        \(hostStatusLines.memoryNodes)
        Mems_allowed_list:\t0
        voluntary_ctxt_switches:\t\(usage.voluntarySwitches)
        nonvoluntary_ctxt_switches:\t\(usage.involuntarySwitches)

        """
    }

    /// The lines of status that describe the hardware and the machine's
    /// memory nodes, not the process: the host's own.
    static let hostStatusLines: (speculation: String, memoryNodes: String) = {
        let lines = String(decoding: hostFile("/proc/self/status") ?? [], as: UTF8.self).split(separator: "\n")
        let speculation = lines.filter { $0.hasPrefix("Speculation") }.joined(separator: "\n")
        let nodes = lines.first { $0.hasPrefix("Mems_allowed:") }.map(String.init)
        return (speculation.isEmpty ? "Speculation_Store_Bypass:\tunknown" : speculation, nodes ?? "Mems_allowed:\t1")
    }()

    /// The signal mask of a thread: the live one for the thread on the vCPU.
    static func mask(of thread: GuestThread, in process: Process) -> UInt64 {
        thread === process.current ? process.signals.mask : thread.signalMask
    }

    /// A resource limit as the process sees it: its own, else detrec's
    /// (RLIM_INFINITY when the host cannot say).
    static func limit(_ process: Process, _ resource: Int32) -> (soft: UInt64, hard: UInt64) {
        if let l = process.limits[resource] { return l }
        var r = rlimit()
        guard getrlimit(__rlimit_resource_t(UInt32(resource)), &r) == 0 else { return (.max, .max) }
        return (UInt64(r.rlim_cur), UInt64(r.rlim_max))
    }

    /// The process's thread `tid`, if it has one.
    static func task(_ process: Process, _ tid: Int32) -> GuestThread? {
        process.threads.first { $0.tid == tid }
    }

    /// fs/proc/array.c do_task_stat: 52 fields. Fault counts and CPU times
    /// are the accounting's (getrusage's): the process's, or the thread's
    /// under task/<tid>; the children's are the process's either way.
    static func stat(_ process: Process, tid: Int32, thread: GuestThread?) -> String {
        process.family.accounting.bringUpToDate()
        let own = thread?.usage ?? process.ownUsage(), children = process.usage.children
        let memory = ProcMemoryFigures(process)
        let stack = process.space.mappings.first { $0.name == "[stack]" }
        let task = task(process, tid) ?? process.current
        let foreground = process.family.terminalForeground ?? -1
        var f: [String] = []
        f.append(String(state(process, tid: tid).prefix(1)))
        f += [ppid(process), process.processGroup, process.session].map { String($0) }
        f += ["0", String(foreground), "4194560"]            // tty_nr tpgid flags
        f += [own.minorFaults, children.minorFaults, own.majorFaults, children.majorFaults].map { String($0) }
        f += [own.userNanoseconds, own.systemNanoseconds, children.userNanoseconds, children.systemNanoseconds]
            .map { String(ResourceUsage.ticks($0)) }   // utime stime cutime cstime
        f += [String(20 + process.nice), String(process.nice), String(process.threads.count), "0"]  // priority nice threads itrealvalue
        f.append(String(ResourceUsage.ticks(process.startedAt)))  // starttime
        f += [String(memory.size * 4096), String(memory.resident), String(limit(process, 5).soft)]  // vsize rss rsslim
        f += [String(memory.code?.lowerBound ?? 0), String(memory.code?.upperBound ?? 0), String(stack?.end ?? 0), "0", "0"]
        // signal blocked sigignore sigcatch: obsolete here (status has them), as Linux prints them.
        f += [String(task.pending.set | process.signals.shared.set), String(mask(of: task, in: process)), "0", "0"]
        f += ["0", "0", "0", "17", "0", "0", "0", "0", "0", "0"]
        f += ["0", "0", String(process.space.brkStart), "0", "0", "0", "0", "0"]
        f.append("0")
        return "\(tid) (\(comm(process, tid: tid))) " + f.joined(separator: " ") + "\n"
    }

    /// task_mmu.c task_statm: size resident shared text lib data dt, in pages.
    static func statm(_ process: Process) -> String {
        let m = ProcMemoryFigures(process)
        let shared = m.residentFile + m.residentShared
        return "\(m.size) \(m.resident) \(shared) \(m.text) 0 \(m.data + m.stack) 0\n"
    }
}

/// A process's memory as task_mmu.c counts it, in pages: its mappings'
/// sizes by kind (total_vm, data_vm, stack_vm, exec_vm, locked_vm) and the
/// pages the host has backed (the RSS counters: anonymous, file, shmem).
struct ProcMemoryFigures {
    var size: UInt64 = 0, data: UInt64 = 0, stack: UInt64 = 0, executable: UInt64 = 0, locked: UInt64 = 0
    /// The program's text: the first executable file mapping
    /// (start_code..end_code).
    var code: Range<UInt64>?
    var residentAnonymous: UInt64 = 0, residentFile: UInt64 = 0, residentShared: UInt64 = 0

    var resident: UInt64 { residentAnonymous + residentFile + residentShared }
    /// VmExe, in pages.
    var text: UInt64 { code.map { ($0.upperBound - $0.lowerBound) / 4096 } ?? 0 }
    /// VmLib: executable mappings other than the program's text.
    var libraries: UInt64 { executable > text ? executable - text : 0 }
    /// VmPTE: the page-table pages the mappings need (one per 2 MiB),
    /// as mm_pgtables_bytes grows with them.
    var pageTables: UInt64 { max(1, size / 512) }

    init(_ process: Process) {
        let mappings = process.space.mappings
        code = mappings.first { $0.protection.contains(.execute) && $0.isFileBacked }.map { $0.start..<$0.end }
        for m in mappings {
            let pages = UInt64(m.pages)
            size += pages
            let isStack = m.options.contains(.growsDown) || m.name == "[stack]"
            if isStack { stack += pages }
            if m.protection.contains(.write), !m.shared, !isStack { data += pages }
            if m.protection.contains(.execute), !m.protection.contains(.write), !isStack { executable += pages }
            if m.options.contains(.locked) { locked += pages }
            let resident = UInt64(process.memory.residentPages(m.start, pages: m.pages))
            // shmem: shared anonymous memory, /dev/shm and memfds (tmpfs);
            // file: the page cache of other files.
            if m.shared, !m.isFileBacked || m.name.hasPrefix("/dev/shm/") || m.name.hasPrefix("/memfd:") {
                residentShared += resident
            } else if m.isFileBacked {
                residentFile += resident
            } else {
                residentAnonymous += resident
            }
        }
    }
}
