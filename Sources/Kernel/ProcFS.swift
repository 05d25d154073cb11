import Glibc
import KVMUser

/// The guest's view of /proc/self (and /proc/<its pid>): the files that
/// describe the process must describe the guest, not detrec. While
/// recording they are generated from the emulated state when opened (as a
/// memfd, so read, lseek, fstat and mmap work unchanged); replay gets what
/// the guest read from the trace, like any other file.
public enum ProcFS {
    public enum Node: Equatable {
        case exe, cwd, maps, status, auxv, cmdline, environ, fdDirectory
        case fd(Int32)
    }

    /// The node a path names, for the process whose host pid is `pid`.
    public static func node(_ path: String, pid: Int32) -> Node? {
        var parts = path.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        guard parts.count >= 3, parts[0] == "proc" else { return nil }
        let owner = parts[1]
        guard owner == "self" || owner == "thread-self" || owner == String(pid) else { return nil }
        parts.removeFirst(2)
        if parts.count >= 3, parts[0] == "task", parts[1] == String(pid) { parts.removeFirst(2) }
        switch parts {
        case ["exe"]: return .exe
        case ["cwd"]: return .cwd
        case ["maps"]: return .maps
        case ["status"]: return .status
        case ["auxv"]: return .auxv
        case ["cmdline"]: return .cmdline
        case ["environ"]: return .environ
        case ["fd"]: return .fdDirectory
        default:
            if parts.count == 2, parts[0] == "fd", let n = Int32(parts[1]) { return .fd(n) }
            return nil
        }
    }

    /// Where a /proc link points, for the guest; nil when the node is not a
    /// link or names no open descriptor.
    public static func link(_ node: Node, process: Process) -> String? {
        switch node {
        case .exe: return process.executablePath
        case .fd(let n): return process.files[n]?.path
        default: return nil
        }
    }

    /// The contents of a /proc file for the guest.
    public static func contents(_ node: Node, process: Process, pid: Int32) -> [UInt8]? {
        switch node {
        case .maps: return Array(maps(process).utf8)
        case .auxv: return process.auxv
        case .cmdline: return process.argv.flatMap { Array($0.utf8) + [0] }
        case .environ: return process.envp.flatMap { Array($0.utf8) + [0] }
        case .status: return Array(status(process, pid: pid).utf8)
        default: return nil
        }
    }

    static func hex(_ v: UInt64, width: Int) -> String {
        let s = String(v, radix: 16)
        return String(repeating: "0", count: max(0, width - s.count)) + s
    }

    /// As Linux's show_map_vma prints it; the name column starts at 74.
    public static func maps(_ process: Process) -> String {
        var out = ""
        var all = process.space.mappings
        all.append(Mapping(start: Layout.systemBase, end: Layout.systemEnd, protection: .read, name: "[detrec]"))
        for m in all {
            let p = m.protection
            var line = "\(hex(m.start, width: 8))-\(hex(m.end, width: 8)) "
            line += (p.contains(.read) ? "r" : "-") + (p.contains(.write) ? "w" : "-") + (p.contains(.execute) ? "x" : "-")
            line += m.shared ? "s" : "p"
            line += " \(hex(m.fileOffset, width: 8)) 00:00 0"
            if !m.name.isEmpty {
                line += String(repeating: " ", count: max(1, 73 - line.count)) + m.name
            }
            out += line + "\n"
        }
        return out
    }

    static func status(_ process: Process, pid: Int32) -> String {
        let name = String(process.executablePath.split(separator: "/").last ?? "").prefix(15)
        let vm = process.space.mappings.reduce(UInt64(0)) { $0 + ($1.end - $1.start) } / 1024
        var ignored: UInt64 = 0, caught: UInt64 = 0
        for (signal, action) in process.signals.actions {
            let handler = Bytes.u64(action, at: 0)
            if handler == 1 { ignored |= 1 << UInt64(signal - 1) } else if handler > 1 { caught |= 1 << UInt64(signal - 1) }
        }
        return """
        Name:\t\(name)
        Umask:\t0022
        State:\tR (running)
        Tgid:\t\(pid)
        Ngid:\t0
        Pid:\t\(pid)
        PPid:\t\(getppid())
        TracerPid:\t0
        Uid:\t\(getuid())\t\(geteuid())\t\(geteuid())\t\(geteuid())
        Gid:\t\(getgid())\t\(getegid())\t\(getegid())\t\(getegid())
        FDSize:\t\(process.files.limit)
        VmSize:\t\(vm) kB
        Threads:\t1
        SigPnd:\t0000000000000000
        ShdPnd:\t0000000000000000
        SigBlk:\t\(hex(process.signals.mask, width: 16))
        SigIgn:\t\(hex(ignored, width: 16))
        SigCgt:\t\(hex(caught, width: 16))

        """
    }

    /// A host memfd holding `bytes`, positioned at 0 (recording only).
    static func memfd(_ bytes: [UInt8]) -> Int32? {
        let fd = Int32(truncatingIfNeeded: Array("detrec-proc".utf8CString).withUnsafeBufferPointer {
            hostSyscall(SYS.memfd_create, Int(bitPattern: $0.baseAddress), 1)   // MFD_CLOEXEC
        })
        guard fd >= 0 else { return nil }
        var done = 0
        while done < bytes.count {
            let n = bytes[done...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n <= 0 { close(fd); return nil }
            done += n
        }
        lseek(fd, 0, SEEK_SET)
        return fd
    }
}
