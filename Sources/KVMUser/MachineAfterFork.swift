import CKVM
import Glibc
import Synchronization

/// Every machine this process made, so that a forked replayer (a replay
/// checkpoint, docs/gdb.md "Checkpoints") can give each a new VM and vCPU.
/// Machines may be made on several threads (tests run in parallel): the
/// list is behind a lock.
enum LiveMachines {
    private final class Weak: @unchecked Sendable { weak var machine: UserMachine?; init(_ m: UserMachine) { machine = m } }
    private static let all = Mutex<[Weak]>([])

    static func add(_ m: UserMachine) {
        let w = Weak(m)
        all.withLock { list in
            list.removeAll { $0.machine == nil }
            list.append(w)
        }
    }

    static var machines: [UserMachine] { all.withLock { $0.compactMap(\.machine) } }
}

/// Forking the replayer: KVM's VM and vCPU fds work only in the process
/// (the mm) that created them, so the child of a fork cannot run its copy
/// of a machine. It can make a new VM and vCPU over the same host memory
/// (the guest's physical regions are MAP_PRIVATE anonymous mappings: the
/// child has a copy-on-write copy at the same addresses) and load the
/// registers, special registers and XSAVE area the parent read before the
/// fork. The dirty page log is harvested before the fork, so the pages
/// changed since the last memory checkpoint are known to both sides.
public enum MachineFork {
    /// In the parent, just before `fork`: reads what the child cannot
    /// (XSAVE, the dirty log) for every live machine.
    public static func prepare() throws(KVMError) {
        for m in LiveMachines.machines {
            var x = kvm_xsave()
            try m.vcpu.ioctl("KVM_GET_XSAVE", CKVM_GET_XSAVE, &x)
            m.xsaveBeforeFork = x
            if let log = m.memory.dirty, log.armed, !log.harvest(below: m.memory.highestFrame) {
                m.memory.useFullCopyCheckpoints(reason: log.failure ?? "dirty page log failed before a fork")
            }
        }
    }

    /// In the child: no ioctl may touch the parent's VM or vCPU. Each
    /// machine gets a new VM with the same memslots and a new vCPU in the
    /// state the parent left (the old fds are closed and the old kvm_run
    /// page unmapped by their deinit, which issues no ioctl).
    public static func rebuild() throws(KVMError) {
        UserMachine.activeRun = nil
        for m in LiveMachines.machines { try m.rebuildAfterFork() }
    }
}

extension UserMachine {
    fileprivate func rebuildAfterFork() throws(KVMError) {
        let saved = sregs
        let newVM = try VirtualMachine(device: device)
        try newVM.readd(tables.region, logDirtyPages: false)
        let logged = memory.dirty?.armed ?? false
        try newVM.readd(memory.data, logDirtyPages: logged)
        memory.dirty?.vm = newVM
        let newVCPU = try VCPU(vm: newVM, device: device)
        vm = newVM
        vcpu = newVCPU
        try configureVCPU()
        sregs = saved
        try vcpu.ioctl("KVM_SET_SREGS", CKVM_SET_SREGS, &sregs)
        sregsDirty = false
        knownXSAVE = .unknown
        if var x = xsaveBeforeFork { try vcpu.ioctl("KVM_SET_XSAVE", CKVM_SET_XSAVE, &x) }
        vcpu.run.pointee.immediate_exit = 0
        memory.translationsChanged = false
    }
}
