import Glibc
import KVMUser

/// Builds a process ready for its first instruction: the same steps in
/// record and replay, so both start from identical guest state.
public enum Launch {
    /// The descriptors the guest inherits, as a program exec'd in detrec's
    /// place would: every one open without close-on-exec when detrec
    /// started (0, 1, 2, and any others a parent passed on, such as a
    /// jobserver pipe). Call it before detrec opens anything of its own.
    public static func inheritedDescriptors() -> [Int32] {
        guard let dir = opendir("/proc/self/fd") else {
            return (0...2).filter { fcntl($0, F_GETFD) >= 0 }
        }
        defer { closedir(dir) }
        let own = dirfd(dir)
        var fds: [Int32] = []
        while let e = readdir(dir) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard let fd = Int32(name), fd != own else { continue }
            let flags = fcntl(fd, F_GETFD)
            if flags >= 0 && flags & FD_CLOEXEC == 0 { fds.append(fd) }
        }
        return fds.sorted()
    }

    /// The signal mask and the ignored signals detrec itself started with:
    /// exec passes both on, so the program starts with them as it would
    /// natively (`nohup` ignores SIGHUP; a parent may block signals).
    public static func inheritedSignals() -> (mask: UInt64, ignored: UInt64) {
        var current = sigset_t()
        sigprocmask(SIG_SETMASK, nil, &current)
        var mask: UInt64 = 0, ignored: UInt64 = 0
        for s in Int32(1)...64 {
            if sigismember(&current, s) == 1 { mask |= SignalState.bit(s) }
            var action = sigaction()
            if s != SIGKILL, s != SIGSTOP, sigaction(s, nil, &action) == 0,
               unsafeBitCast(action.__sigaction_handler.sa_handler, to: Int.self) == 1 {
                ignored |= SignalState.bit(s)
            }
        }
        return (mask & ~(SignalState.bit(SIGKILL) | SignalState.bit(SIGSTOP)), ignored)
    }

    public static func inherit(_ process: Process, mask: UInt64, ignored: UInt64) {
        process.signals.mask = mask
        process.current.signalMask = mask
        for s in Int32(1)...64 where ignored & SignalState.bit(s) != 0 {
            process.signals.actions[s] = Bytes.u64(1) + [UInt8](repeating: 0, count: 24)
        }
    }

    /// What detrec's own descriptor refers to (a tty, a pipe, a file), as /proc shows it.
    static func hostLink(_ fd: Int32) -> String {
        var buf = [CChar](repeating: 0, count: 4096)
        let n = Glibc.readlink("/proc/self/fd/\(fd)", &buf, buf.count - 1)
        return n > 0 ? String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : "/dev/null"
    }

    public static func process(machine: UserMachine, executable: [UInt8], interpreter: (path: String, bytes: [UInt8])?,
                               info: StartupInfo,
                               stdio: [Int32], recording: Bool, cwd: String? = nil,
                               inherited: InheritedState = InheritedState()) throws(ProgramLoader.Failure) -> Process {
        // The working directory is detrec's as it starts (replay: the recording's, from the trace header).
        let process = Process(machine: machine, executablePath: info.exePath,
                              cwd: WorkingDirectory.initial(recording: recording, path: cwd), inherited: inherited)
        for fd in stdio where fd >= 0 && fd < process.files.limit {
            // While recording, each guest descriptor owns a duplicate, so the
            // guest closing its stdout never closes detrec's.
            let host: Int32? = recording ? fcntl(fd, F_DUPFD_CLOEXEC, 3) : nil
            if recording && (host ?? -1) < 0 { continue }
            process.files.install(OpenFile(hostFD: host, path: recording ? hostLink(fd) : "", echo: fd == 1 || fd == 2 ? fd : nil),
                                  at: fd, closeOnExec: false)
        }
        let leaf1 = machine.cpuid.leaves.first { $0.function == 1 && $0.index == 0 }
        try ProgramLoader.start(executable, interpreter: interpreter, info: info, process: process, hwcap: UInt64(leaf1?.edx ?? 0))
        return process
    }
}
