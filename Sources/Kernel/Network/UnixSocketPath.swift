import Glibc

/// A Unix socket address naming a relative path (bind, connect, sendto,
/// sendmsg, sendmmsg): Linux resolves it against the calling process's
/// working directory, and detrec performs the call on the host, whose
/// working directory is detrec's own. There is no bindat/connectat, and
/// handing the host /proc/self/fd/N/name instead would change the name the
/// socket is bound to (getsockname, the peer's accept and getpeername
/// report it, and it must fit sun_path's 108 bytes), so for the one host
/// call detrec's working directory is moved to the process's and put back
/// after, as `FileCreationMask` does with the umask. Recording only (replay
/// never calls the host); detrec resolves nothing of its own against its
/// working directory in between, and its other threads (watchdog,
/// copy-before-write) use no paths.
enum UnixSocketPath {
    static let AF_UNIX: UInt16 = 1

    /// Whether `address` (a struct sockaddr as the guest passed it) is an
    /// AF_UNIX pathname address whose path is relative: not unnamed (only
    /// the family), not abstract (sun_path[0] == 0), not absolute.
    static func isRelative(_ address: [UInt8]) -> Bool {
        guard address.count > 2, UInt16(address[0]) | UInt16(address[1]) << 8 == AF_UNIX else { return false }
        return address[2] != 0 && address[2] != UInt8(ascii: "/")
    }

    /// detrec's own working directory, to come back to (opened on first use;
    /// detrec never changes it otherwise).
    static let detrecDirectory: Int32 =
        Glibc.open(".", WorkingDirectorySyscalls.O_PATH | O_DIRECTORY | O_CLOEXEC)

    /// Runs the host call `body` (a result or -errno) from the directory
    /// `cwd` when `address` names a relative path; otherwise as it is.
    static func resolving<E: Error>(_ address: [UInt8], against cwd: WorkingDirectory,
                                    _ body: () throws(E) -> Int64) throws(E) -> Int64 {
        guard isRelative(address), let fd = cwd.file.hostFD else { return try body() }
        guard detrecDirectory >= 0 else { return -Int64(EIO) }
        guard fchdir(fd) == 0 else { return -Int64(errno) }
        defer { _ = fchdir(detrecDirectory) }
        return try body()
    }
}
