import Glibc

/// Why the machine could not be built or run. Messages are for users.
public enum KVMError: Error, CustomStringConvertible, Equatable {
    /// `/dev/kvm` is missing or not accessible.
    case deviceUnavailable(path: String, errno: Int32)
    /// An ioctl failed: its name and errno.
    case ioctl(name: String, errno: Int32)
    /// The host KVM lacks something detrec needs.
    case unsupported(String)
    /// A host mmap for guest memory failed.
    case hostMemory(errno: Int32)
    /// The CPU feature table of a trace asks for something this host lacks.
    case cpuidIncompatible(String)
    /// KVM returned an exit detrec does not expect (a bug or a broken host).
    case unexpectedExit(String)

    public var description: String {
        switch self {
        case .deviceUnavailable(let path, let e):
            let why = String(cString: strerror(e))
            let hint = e == EACCES ? " (add your user to the kvm group, or run as root)" : ""
            return "cannot open \(path): \(why)\(hint); detrec needs KVM on an x86-64 Linux host"
        case .ioctl(let name, let e):
            return "\(name) failed: \(String(cString: strerror(e)))"
        case .unsupported(let what):
            return "this host's KVM does not support \(what)"
        case .hostMemory(let e):
            return "cannot reserve host memory for the guest: \(String(cString: strerror(e)))"
        case .cpuidIncompatible(let what):
            return "the trace cannot run on this CPU: \(what)"
        case .unexpectedExit(let what):
            return "unexpected KVM exit: \(what)"
        }
    }
}
