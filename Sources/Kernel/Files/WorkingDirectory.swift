import Glibc

/// A process's working directory, its own and never detrec's: while
/// recording, a host directory descriptor that every relative path and
/// AT_FDCWD resolves against (an *at call gets it as its directory; a call
/// without one gets the path through /proc/self/fd/N, which the host walks
/// the same way), so a child's chdir moves nobody else. Replay has no
/// descriptor and needs none: every host answer comes from the trace.
public struct WorkingDirectory {
    /// The directory (O_PATH) while recording; shared by fork as Linux
    /// shares the path, replaced by chdir.
    public var file: OpenFile
    /// Its absolute path, resolved lexically from the chdir calls (only for
    /// naming: the program an exec runs). getcwd asks the host.
    public var path: String

    public init(file: OpenFile, path: String) {
        self.file = file
        self.path = path
    }

    /// detrec's own working directory when it starts, as the first
    /// process's (recording: a descriptor for it; replay: only the path).
    public static func initial(recording: Bool, path: String? = nil) -> WorkingDirectory {
        var buf = [CChar](repeating: 0, count: 4096)
        let name = path ?? (getcwd(&buf, buf.count) != nil ? String(cString: buf) : "/")
        let fd: Int32? = recording ? Glibc.open(".", WorkingDirectorySyscalls.O_PATH | O_DIRECTORY | O_CLOEXEC) : nil
        return WorkingDirectory(file: OpenFile(hostFD: fd.flatMap { $0 >= 0 ? $0 : nil }, path: name), path: name)
    }

    /// The host directory descriptor relative paths go against: the
    /// working directory's, or AT_FDCWD when it has none.
    var hostFD: Int32 { file.hostFD ?? -100 }

    /// `path` as the host should see it: a relative path goes through the
    /// working directory's descriptor (/proc/self/fd/N/path).
    func hostPath(_ path: [UInt8]) -> [UInt8] {
        guard path.first != UInt8(ascii: "/"), !path.isEmpty, let fd = file.hostFD else { return path }
        return Array("/proc/self/fd/\(fd)/".utf8) + path
    }

    /// `name` made absolute against `base` and normalized without looking
    /// at the file system ("." and ".." and repeated slashes removed).
    static func resolve(_ name: String, against base: String) -> String {
        let full = name.hasPrefix("/") ? name : base + "/" + name
        var parts: [Substring] = []
        for part in full.split(separator: "/", omittingEmptySubsequences: true) {
            if part == "." { continue }
            if part == ".." { _ = parts.popLast(); continue }
            parts.append(part)
        }
        return "/" + parts.joined(separator: "/")
    }
}

/// chdir, fchdir and getcwd on the process's own working directory.
enum WorkingDirectorySyscalls {
    static func register(_ t: inout SyscallTable) {
        t.add(SYS.chdir, chdir)
        t.add(SYS.fchdir, fchdir)
        t.add(SYS.getcwd, getcwd)
        ChangeRoot.register(&t)
    }

    static let AT_EMPTY_PATH: Int32 = 0x1000, AT_EACCESS: Int32 = 0x200
    /// O_PATH (Glibc does not export it to Swift).
    static let O_PATH: Int32 = 0o10000000

    /// chdir's own check: the directory must be searchable with the
    /// effective ids (recording only).
    static func searchable(_ fd: Int32) -> Int64 {
        Array("".utf8CString).withUnsafeBufferPointer { p in
            hostSyscall(SYS.faccessat2, Int(fd), Int(bitPattern: p.baseAddress), Int(X_OK), Int(AT_EACCESS | AT_EMPTY_PATH))
        }
    }

    static func chdir(_ c: SyscallCall) throws -> Int64 {
        let name = try c.cString(0, limit: SyscallCall.pathMax)
        let process = c.process
        let cwd = process.cwd
        var opened: Int32 = -1
        let r = try c.host { _ throws(Errno) -> Int64 in
            let fd = Int32(truncatingIfNeeded: (name + [0]).withUnsafeBytes { p in
                hostSyscall(SYS.openat, Int(cwd.hostFD), Int(bitPattern: p.baseAddress), Int(O_PATH | O_DIRECTORY | O_CLOEXEC))
            })
            guard fd >= 0 else { return Int64(fd) }
            let ok = searchable(fd)
            guard ok == 0 else { Glibc.close(fd); return ok }
            opened = fd
            return 0
        }
        guard r == 0 else { return r }
        let path = WorkingDirectory.resolve(String(decoding: name, as: UTF8.self), against: cwd.path)
        process.cwd = WorkingDirectory(file: OpenFile(hostFD: opened >= 0 ? opened : nil, path: path), path: path)
        return 0
    }

    static func fchdir(_ c: SyscallCall) throws -> Int64 {
        let file = try c.file(0)
        let r = try c.host { _ throws(Errno) -> Int64 in
            guard let fd = file.hostFD else { throw .badf }
            var st = stat()
            guard fstat(fd, &st) == 0 else { throw Errno(errno) }
            guard st.st_mode & S_IFMT == S_IFDIR else { throw .notdir }
            return searchable(fd)
        }
        guard r == 0 else { return r }
        c.process.cwd = WorkingDirectory(file: file, path: WorkingDirectory.resolve(file.path, against: c.process.cwd.path))
        return 0
    }

    /// getcwd: the path of the process's directory as the host names it
    /// now (ENOENT once it has been removed, as Linux says).
    static func getcwd(_ c: SyscallCall) throws -> Int64 {
        let size = try c.size(1)
        let address = c.arg(0)
        let cwd = c.process.cwd
        return try c.host { effects throws(Errno) -> Int64 in
            var buf = [CChar](repeating: 0, count: 4097)
            let path: String
            if let fd = cwd.file.hostFD {
                let n = Glibc.readlink("/proc/self/fd/\(fd)", &buf, 4096)
                guard n > 0 else { throw Errno(errno) }
                path = String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
                guard path.hasPrefix("/"), !path.hasSuffix(" (deleted)") else { throw .noent }
            } else {
                guard Glibc.getcwd(&buf, buf.count) != nil else { throw Errno(errno) }
                path = String(cString: buf)
            }
            let bytes = Array(path.utf8) + [0]
            guard bytes.count <= size else { throw Errno(ERANGE) }
            try effects.write(address, bytes)
            return Int64(bytes.count)
        }
    }
}
