import Glibc

/// A Linux error number returned to the guest as -errno.
public struct Errno: Error, Equatable, Sendable, CustomStringConvertible {
    public let code: Int32
    public init(_ code: Int32) { self.code = code }

    public static let perm = Errno(EPERM), noent = Errno(ENOENT), srch = Errno(ESRCH)
    public static let intr = Errno(EINTR), io = Errno(EIO), badf = Errno(EBADF)
    public static let again = Errno(EAGAIN), nomem = Errno(ENOMEM), acces = Errno(EACCES)
    public static let fault = Errno(EFAULT), exist = Errno(EEXIST), notdir = Errno(ENOTDIR)
    public static let inval = Errno(EINVAL), mfile = Errno(EMFILE), notty = Errno(ENOTTY)
    public static let nosys = Errno(ENOSYS), nametoolong = Errno(ENAMETOOLONG)
    public static let range = Errno(ERANGE), notsup = Errno(EOPNOTSUPP), nodev = Errno(ENODEV)
    public static let overflow = Errno(EOVERFLOW), child = Errno(ECHILD), pipe = Errno(EPIPE)

    /// The value the guest sees in RAX.
    public var result: Int64 { -Int64(code) }

    public var description: String { "-\(String(cString: strerror(code)))" }
}

/// Errno names for reports and `detrec dump`.
public enum ErrnoNames {
    public static func name(_ code: Int32) -> String {
        let names: [Int32: String] = [
            EPERM: "EPERM", ENOENT: "ENOENT", ESRCH: "ESRCH", EINTR: "EINTR", EIO: "EIO",
            EBADF: "EBADF", EAGAIN: "EAGAIN", ENOMEM: "ENOMEM", EACCES: "EACCES", EFAULT: "EFAULT",
            EEXIST: "EEXIST", ENOTDIR: "ENOTDIR", EISDIR: "EISDIR", EINVAL: "EINVAL", EMFILE: "EMFILE",
            ENOTTY: "ENOTTY", ENOSPC: "ENOSPC", ESPIPE: "ESPIPE", EPIPE: "EPIPE", ERANGE: "ERANGE",
            ENOSYS: "ENOSYS", ENOTEMPTY: "ENOTEMPTY", ENAMETOOLONG: "ENAMETOOLONG", ELOOP: "ELOOP",
            EOPNOTSUPP: "EOPNOTSUPP", ETIMEDOUT: "ETIMEDOUT", ENODEV: "ENODEV", EOVERFLOW: "EOVERFLOW",
            ECHILD: "ECHILD", EXDEV: "EXDEV", ENXIO: "ENXIO", E2BIG: "E2BIG",
        ]
        return names[code] ?? "E\(code)"
    }
}
