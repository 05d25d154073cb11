import CKVM
import Glibc

/// What this host's KVM can do, measured rather than assumed: the backend
/// (PVM on the development machines, VMX/SVM on bare metal), the PMU, and
/// the KVM capabilities detrec relies on.
public struct HostCapabilities: Sendable, Equatable {
    public enum Backend: String, Sendable {
        case pvm = "kvm_pvm"
        case intel = "kvm_intel"
        case amd = "kvm_amd"
        case unknown = "unknown"
    }

    public var backend: Backend
    /// A hardware counter of retired branches is available to this process.
    public var hasBranchCounter: Bool
    public var syncRegs: Bool
    public var xcrs: Bool
    public var immediateExit: Bool

    public static func probe(device: KVMDevice) -> HostCapabilities {
        HostCapabilities(
            backend: detectBackend(),
            hasBranchCounter: probeBranchCounter(),
            syncRegs: device.checkExtension(CKVM_CAP_SYNC_REGS) != 0,
            xcrs: device.checkExtension(CKVM_CAP_XCRS) != 0,
            immediateExit: device.checkExtension(CKVM_CAP_IMMEDIATE_EXIT) != 0)
    }

    static func detectBackend() -> Backend {
        for backend in [Backend.pvm, .intel, .amd] where access("/sys/module/\(backend.rawValue)", F_OK) == 0 {
            return backend
        }
        return .unknown
    }

    static func probeBranchCounter() -> Bool {
        let fd = ckvm_probe_branch_counter()
        if fd >= 0 { close(fd); return true }
        return false
    }

    /// One line for the trace header and `detrec doctor`.
    public var summary: String {
        "\(backend.rawValue), \(hasBranchCounter ? "PMU branch counter" : "no PMU")"
    }

    /// What the hardware can trap here, for `detrec doctor`: PVM cannot trap
    /// rdtsc or rdrand, so only CPUID-respecting code stays deterministic.
    public var notes: [String] {
        var notes: [String] = []
        switch backend {
        case .pvm:
            notes.append("PVM: rdtsc and rdrand run natively and cannot be trapped; CPUID hides RDRAND/RDSEED, so code that checks CPUID stays deterministic")
            notes.append("PVM: hardware debug registers and KVM single-step do not work; software breakpoints and TF stepping do")
        case .intel, .amd:
            notes.append("\(backend == .intel ? "VMX" : "SVM"): CPUID is controlled by detrec")
        case .unknown:
            notes.append("unknown KVM backend: behaviour not measured")
        }
        if !hasBranchCounter {
            notes.append("no PMU: progress is counted by syscalls and faults only; asynchronous events land at trap points")
        }
        return notes
    }
}
