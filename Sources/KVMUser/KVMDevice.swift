import CKVM
import Glibc

/// The open `/dev/kvm`: the system-wide handle that creates VMs and answers
/// capability queries. The only file besides VCPU and VirtualMachine that
/// issues ioctls.
public final class KVMDevice {
    public let fd: Int32

    public init(path: String = "/dev/kvm") throws(KVMError) {
        let fd = open(path, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { throw .deviceUnavailable(path: path, errno: errno) }
        self.fd = fd
        let version = ckvm_ioctl_int(fd, CKVM_GET_API_VERSION, 0)
        guard version == 12 else {
            close(fd)
            throw .unsupported("KVM API version 12 (found \(version))")
        }
    }

    deinit { close(fd) }

    public func checkExtension(_ cap: Int32) -> Int32 {
        max(0, ckvm_ioctl_int(fd, CKVM_CHECK_EXTENSION, UInt(cap)))
    }

    /// The CPUID leaves KVM can present to a guest on this host.
    public func supportedCPUID() throws(KVMError) -> [kvm_cpuid_entry2] {
        var entries = [kvm_cpuid_entry2](repeating: kvm_cpuid_entry2(), count: 256)
        let n = entries.withUnsafeMutableBufferPointer { ckvm_get_supported_cpuid(fd, $0.baseAddress, 256) }
        guard n >= 0 else { throw .ioctl(name: "KVM_GET_SUPPORTED_CPUID", errno: -n) }
        return Array(entries[0..<Int(n)])
    }

    public func vcpuMmapSize() throws(KVMError) -> Int {
        let size = ckvm_ioctl_int(fd, CKVM_GET_VCPU_MMAP_SIZE, 0)
        guard size > 0 else { throw .ioctl(name: "KVM_GET_VCPU_MMAP_SIZE", errno: errno) }
        return Int(size)
    }
}
