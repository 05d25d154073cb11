import Glibc

/// seccomp(2), and prctl's PR_GET_SECCOMP and PR_SET_SECCOMP, as
/// kernel/seccomp.c's do_seccomp: installing strict mode or a filter on
/// the calling thread (or all threads with TSYNC), and the queries. The
/// filters then judge the thread's syscalls (`Seccomp.verdict`).
enum SeccompSyscalls {
    static let SET_MODE_STRICT: UInt32 = 0, SET_MODE_FILTER: UInt32 = 1
    static let GET_ACTION_AVAIL: UInt32 = 2, GET_NOTIF_SIZES: UInt32 = 3
    static let FLAG_TSYNC: UInt64 = 1, FLAG_LOG: UInt64 = 2, FLAG_SPEC_ALLOW: UInt64 = 4
    static let FLAG_NEW_LISTENER: UInt64 = 8, FLAG_TSYNC_ESRCH: UInt64 = 16, FLAG_WAIT_KILLABLE_RECV: UInt64 = 32
    static let knownFlags: UInt64 = 63
    /// MAX_INSNS_PER_PATH: 256 KiB of instructions over a thread's filters.
    static let maxPathInstructions = (1 << 18) / 8
    static let CAP_SYS_ADMIN = 21

    static func register(_ t: inout SyscallTable) {
        t.add(SYS.seccomp, .emulated,
              note: "strict mode and classic-BPF filters applied to the program's syscalls (TSYNC, LOG, SPEC_ALLOW); NEW_LISTENER refused (EINVAL)") { c in
            try seccomp(c, operation: UInt32(truncatingIfNeeded: c.arg(0)), flags: c.arg(1), arguments: c.arg(2))
        }
    }

    /// prctl(PR_GET_SECCOMP): the calling thread's mode.
    static func getMode(_ c: SyscallCall) -> Int64 { Int64(c.process.current.seccomp.mode.rawValue) }

    /// prctl(PR_SET_SECCOMP, mode, filter): do_seccomp without flags.
    static func setMode(_ c: SyscallCall) throws -> Int64 {
        switch c.arg(1) {
        case UInt64(SeccompState.Mode.strict.rawValue): return try seccomp(c, operation: SET_MODE_STRICT, flags: 0, arguments: 0)
        case UInt64(SeccompState.Mode.filter.rawValue): return try seccomp(c, operation: SET_MODE_FILTER, flags: 0, arguments: c.arg(2))
        default: throw Errno.inval
        }
    }

    static func seccomp(_ c: SyscallCall, operation: UInt32, flags: UInt64, arguments: UInt64) throws -> Int64 {
        switch operation {
        case SET_MODE_STRICT:
            guard flags == 0, arguments == 0 else { throw Errno.inval }
            let thread = c.process.current
            guard thread.seccomp.mode != .filter else { throw Errno.inval }
            thread.seccomp.mode = .strict
            return 0
        case SET_MODE_FILTER:
            return try installFilter(c, flags: flags, arguments: arguments)
        case GET_ACTION_AVAIL:
            guard flags == 0 else { throw Errno.inval }
            let action: UInt32 = try c.readValue(arguments)
            guard Seccomp.knownActions.contains(action) else { throw Errno.notsup }
            return 0
        case GET_NOTIF_SIZES:
            guard flags == 0 else { throw Errno.inval }
            // struct seccomp_notif, seccomp_notif_resp, seccomp_data.
            try c.write(arguments, [80, 0, 24, 0, 64, 0])
            return 0
        default:
            throw Errno.inval
        }
    }

    /// SECCOMP_SET_MODE_FILTER, in seccomp_set_mode_filter's order of checks.
    static func installFilter(_ c: SyscallCall, flags: UInt64, arguments: UInt64) throws -> Int64 {
        let p = c.process
        guard flags & ~knownFlags == 0 else { throw Errno.inval }
        if flags & FLAG_TSYNC != 0 && flags & FLAG_NEW_LISTENER != 0 && flags & FLAG_TSYNC_ESRCH == 0 { throw Errno.inval }
        if flags & FLAG_WAIT_KILLABLE_RECV != 0 && flags & FLAG_NEW_LISTENER == 0 { throw Errno.inval }
        // struct sock_fprog: unsigned short len, then the pointer at 8.
        let header = try c.read(arguments, count: 16)
        let count = Int(UInt16(header[0]) | UInt16(header[1]) << 8)
        let address = Bytes.u64(header, at: 8)
        guard count > 0, count <= SeccompProgram.maxInstructions else { throw Errno.inval }
        if !p.control.noNewPrivileges, try !hasSysAdmin(c) { throw Errno.acces }
        let program = try SeccompProgram.check(BPFInstruction.decode(try c.read(address, count: count * 8)))
        if flags & FLAG_NEW_LISTENER != 0 {
            p.report("seccomp SECCOMP_FILTER_FLAG_NEW_LISTENER: user-space notification is not supported (no listener descriptor); returning EINVAL",
                     key: SYS.seccomp | 0x8_0000_0000, rip: c.rip)
            throw Errno.inval
        }
        let thread = p.current
        guard thread.seccomp.mode != .strict else { throw Errno.inval }
        let filter = SeccompFilter(program: program, log: flags & FLAG_LOG != 0, previous: thread.seccomp.filters)
        guard filter.pathLength - 4 <= maxPathInstructions else { throw Errno.nomem }
        if flags & FLAG_TSYNC != 0 {
            // Every other thread must have no filter, or filters this one's chain extends.
            for t in p.threads where t !== thread {
                let compatible = t.seccomp.mode == .disabled
                    || (t.seccomp.mode == .filter && (thread.seccomp.filters?.descends(from: t.seccomp.filters) ?? (t.seccomp.filters == nil)))
                if !compatible {
                    if flags & FLAG_TSYNC_ESRCH != 0 { throw Errno.srch }
                    return Int64(t.tid)
                }
            }
        }
        // SPEC_ALLOW: without it Linux only forces the speculative store
        // bypass mitigation on when the host booted with the seccomp
        // policy for it; detrec's answers to PR_GET_SPECULATION_CTRL are
        // the host's either way.
        thread.seccomp = SeccompState(mode: .filter, filters: filter)
        if flags & FLAG_TSYNC != 0 {
            for t in p.threads where t !== thread { t.seccomp = thread.seccomp }
        }
        return 0
    }

    /// Whether the recording holds CAP_SYS_ADMIN (its effective set, as
    /// the host gives it to detrec), which lets a filter be installed
    /// without no_new_privs.
    static func hasSysAdmin(_ c: SyscallCall) throws -> Bool {
        try c.host { _ in
            var head: [UInt32] = [0x2008_0522, 0]
            var data = [UInt32](repeating: 0, count: 6)
            let r = head.withUnsafeMutableBytes { h in
                data.withUnsafeMutableBytes { d in hostSyscall(SYS.capget, Int(bitPattern: h.baseAddress), Int(bitPattern: d.baseAddress)) }
            }
            guard r == 0 else { return 0 }
            return data[0] & (1 << UInt32(CAP_SYS_ADMIN)) != 0 ? 1 : 0
        } == 1
    }
}

extension SeccompState {
    init(mode: Mode, filters: SeccompFilter?) {
        self.mode = mode
        self.filters = filters
    }
}
