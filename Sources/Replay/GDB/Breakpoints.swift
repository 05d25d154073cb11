import KVMUser

/// Software breakpoints: an int3 patched into guest memory through
/// `GuestMemory`'s overlay, so nothing but the CPU ever sees the 0xCC.
/// They stay inserted while the replay is stopped; the overlay hides them
/// from gdb's memory reads.
final class Breakpoints {
    let memory: GuestMemory
    private(set) var addresses: Set<UInt64> = []

    init(memory: GuestMemory) { self.memory = memory }

    func contains(_ address: UInt64) -> Bool {
        addresses.contains(address) && memory.patches[address] != nil
    }

    /// Z0/Z1. Fails when the address is not mapped.
    func insert(_ address: UInt64) -> Bool {
        guard !addresses.contains(address) else { return true }
        do {
            try memory.insertPatch(address)
        } catch {
            return false
        }
        addresses.insert(address)
        return true
    }

    /// z0/z1. Removing one that is not there is fine, as gdb expects.
    func remove(_ address: UInt64) {
        guard addresses.remove(address) != nil else { return }
        memory.removePatch(address)
    }

    /// Takes the int3 at `address` out while one instruction runs there;
    /// `restore` puts it back (unless gdb removed the breakpoint meanwhile).
    func lift(_ address: UInt64) -> Bool {
        guard contains(address) else { return false }
        memory.liftPatch(address)
        return true
    }

    func restore(_ address: UInt64) {
        if addresses.contains(address) { memory.relayPatch(address) }
    }

    /// Drops every breakpoint (detach, kill).
    func removeAll() {
        for a in addresses { memory.removePatch(a) }
        addresses.removeAll()
    }
}
