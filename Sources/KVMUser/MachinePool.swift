import Glibc

/// Machines whose process let go of them (it ended and was reaped, or it
/// exec'd), kept to be reset and handed to the next new process: fork and
/// exec then cost no KVM_CREATE_VM, vCPU and memslot set-up, and no VM
/// teardown, which were most of what a new process cost
/// (docs/benchmarks.md, processes). A reset machine is what a new one is
/// (`UserMachine.reset`), so record and replay, whichever machine they
/// get, build the same guest state. `DETREC_MACHINE_POOL=off` turns it
/// off (to measure the difference).
public enum MachinePool {
    nonisolated(unsafe) private static var idle: [UserMachine] = []
    /// Idle machines keep the host memory of their last guest until they
    /// are reused, so only a few are kept.
    static let limit = 2
    static let disabled: Bool = getenv("DETREC_MACHINE_POOL").map { String(cString: $0) == "off" } ?? false

    /// A machine for a new process: an idle one, reset, when one is free,
    /// else a new one.
    public static func take(device: KVMDevice, cpuid: CPUIDTable) throws(KVMError) -> UserMachine {
        var i = idle.count - 1
        while i >= 0 {
            // Only a machine nothing else still holds (a debugger's view, a
            // checkpoint) may become another process's.
            if idle[i].device === device, idle[i].cpuid == cpuid, isKnownUniquelyReferenced(&idle[i]) {
                let m = idle.remove(at: i)
                do throws(KVMError) {
                    try m.reset()
                    return m
                } catch {
                    // Dropped: a new one below.
                }
            }
            i -= 1
        }
        return try UserMachine(device: device, cpuid: cpuid)
    }

    /// `m`'s process is done with it (its memory context went away).
    public static func give(_ m: UserMachine) {
        guard !disabled else { return }
        idle.append(m)
        if idle.count > limit { idle.removeFirst() }
    }
}
