import Glibc
import Synchronization

/// A Unix socket address naming a path (bind, connect, sendto, sendmsg,
/// sendmmsg). detrec performs the call on the host, so two things differ
/// from the guest's view:
///
/// - A relative path resolves against the calling process's working
///   directory, and the host's is detrec's own. There is no
///   bindat/connectat, and handing the host /proc/self/fd/N/name instead
///   would change the name the socket is bound to (getsockname, the peer's
///   accept and getpeername report it, and it must fit sun_path's 108
///   bytes), so for the one host call detrec's working directory is moved
///   to the process's and put back after, as `FileCreationMask` does with
///   the umask.
/// - A path through /proc (`/proc/self/cwd/s`, `/proc/self/fd/N/s`, a
///   symlink into either) would be resolved by the host in detrec's own
///   /proc: its working directory, its descriptors. Every pathname address
///   is first walked by `GuestPath` for the guest; one the walk rewrote
///   (it went through the guest's /proc names) is handed to the host as
///   the directory it led to (detrec moves there for the call) and the last
///   component. A name inside the guest's /proc itself binds nowhere
///   (EADDRINUSE for an existing node, the walk's error else) and connects
///   to nothing (ECONNREFUSED: no socket is bound to a /proc inode).
///   Linux keeps the name as the program gave it: getsockname on such a
///   socket reports it (`boundNames`); a peer's view (getpeername, accept,
///   recvfrom) shows the resolved last component.
///
/// Recording only (replay never calls the host); detrec resolves nothing of
/// its own against its working directory in between, and its other threads
/// (watchdog, copy-before-write) use no paths. Abstract (sun_path[0] == 0)
/// and unnamed addresses go as they are.
enum UnixSocketPath {
    static let AF_UNIX: UInt16 = 1
    static let pathOffset = 2

    /// Whether `address` (a struct sockaddr as the guest passed it) is an
    /// AF_UNIX pathname address: not unnamed (only the family), not
    /// abstract (sun_path[0] == 0).
    static func isPathname(_ address: [UInt8]) -> Bool {
        guard address.count > pathOffset, UInt16(address[0]) | UInt16(address[1]) << 8 == AF_UNIX else { return false }
        return address[pathOffset] != 0
    }

    /// Whether `address` is a pathname address whose path is relative.
    static func isRelative(_ address: [UInt8]) -> Bool {
        isPathname(address) && address[pathOffset] != UInt8(ascii: "/")
    }

    /// The path of a pathname address: sun_path up to its first NUL, as
    /// Linux reads it (unix_mkname_bsd).
    static func path(_ address: [UInt8]) -> [UInt8] {
        let rest = address[pathOffset...]
        return Array(rest.prefix { $0 != 0 })
    }

    /// Where the host call of one address goes.
    struct Target {
        /// The address to hand the host.
        var address: [UInt8]
        /// The directory to run the host call from: the process's working
        /// directory (a relative path), a directory the guest's /proc led to
        /// (opened for the call), or none (as it is).
        var base: Base
        /// The call's result without asking the host (a name in the
        /// guest's /proc).
        var failure: Errno?
        /// The name as Linux keeps it, when `address` was rewritten.
        var guestName: [UInt8]?

        enum Base {
            case none
            case directory(WorkingDirectory)
            case path(String)
        }

        static func asIs(_ address: [UInt8]) -> Target { Target(address: address, base: .none) }
    }

    /// Decides where `address` goes for `c`'s process. `binding`: bind's
    /// walk does not follow a symlink in the last component (the name is
    /// created, an existing one is EADDRINUSE). Nothing happens on replay.
    static func target(_ address: [UInt8], _ c: SyscallCall, binding: Bool) -> Target {
        guard !c.world.isReplaying, isPathname(address) else { return .asIs(address) }
        let name = path(address)
        let (where_, canonical, rewritten) = GuestPath.resolveWithPath(name, from: nil, process: c.process,
                                                                       follow: !binding)
        switch where_ {
        case .denied(let e):
            return Target(address: address, base: .none, failure: e)
        case .proc:
            return Target(address: address, base: .none, failure: binding ? Errno(EADDRINUSE) : Errno(ECONNREFUSED))
        case .host, .hostProc:
            break
        }
        guard rewritten else {
            return Target(address: address, base: isRelative(address) ? .directory(c.process.cwd) : .none)
        }
        // The walk went through the guest's /proc: the host gets where it led.
        let parts = canonical.split(separator: "/", omittingEmptySubsequences: true)
        guard let last = parts.last else { return Target(address: address, base: .none, failure: binding ? Errno(EADDRINUSE) : Errno(ECONNREFUSED)) }
        let directory = "/" + parts.dropLast().joined(separator: "/")
        let hostAddress = Array(address[..<pathOffset]) + Array(last.utf8) + [0]
        let kept = Array(address[..<pathOffset]) + name + [0]
        return Target(address: hostAddress, base: .path(directory), guestName: kept)
    }

    /// detrec's own working directory, to come back to (opened on first use;
    /// detrec never changes it otherwise).
    static let detrecDirectory: Int32 =
        Glibc.open(".", WorkingDirectorySyscalls.O_PATH | O_DIRECTORY | O_CLOEXEC)

    /// Runs the host call `body` (given the address to pass; a result or
    /// -errno) from the directory `target` names.
    static func resolving<E: Error>(_ target: Target, _ body: ([UInt8]) throws(E) -> Int64) throws(E) -> Int64 {
        if let failure = target.failure { return failure.result }
        let fd: Int32
        var opened = false
        switch target.base {
        case .none:
            return try body(target.address)
        case .directory(let cwd):
            guard let h = cwd.file.hostFD else { return try body(target.address) }
            fd = h
        case .path(let p):
            fd = Glibc.open(p, WorkingDirectorySyscalls.O_PATH | O_DIRECTORY | O_CLOEXEC)
            guard fd >= 0 else { return -Int64(errno) }
            opened = true
        }
        defer { if opened { _ = close(fd) } }
        guard detrecDirectory >= 0 else { return -Int64(EIO) }
        guard fchdir(fd) == 0 else { return -Int64(errno) }
        defer { _ = fchdir(detrecDirectory) }
        return try body(target.address)
    }

    /// The names Linux keeps for sockets bound through a rewritten path:
    /// the socket (its host inode) -> (the name the host holds, the guest's).
    static let boundNames = Mutex<[SocketKey: (host: [UInt8], guest: [UInt8])]>([:])

    struct SocketKey: Hashable {
        var device: UInt64
        var inode: UInt64
        init?(_ fd: Int32) {
            var st = stat()
            guard fstat(fd, &st) == 0 else { return nil }
            device = UInt64(st.st_dev)
            inode = UInt64(st.st_ino)
        }
    }

    /// After a successful bind of `target` on host socket `fd`.
    static func bound(_ fd: Int32, _ target: Target) {
        guard let guest = target.guestName, let key = SocketKey(fd) else { return }
        boundNames.withLock { $0[key] = (target.address, guest) }
    }

    /// getsockname's answer for host socket `fd`: the guest's name when the
    /// host reports the name detrec bound it to.
    static func ownName(_ fd: Int32, _ reported: [UInt8]) -> [UInt8] {
        guard let key = SocketKey(fd), let entry = boundNames.withLock({ $0[key] }) else { return reported }
        return reported == entry.host ? entry.guest : reported
    }
}
