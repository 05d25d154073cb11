import KVMUser

/// What CLONE_VM shares, as Linux's mm_struct: the machine (vCPU, page
/// tables, guest memory), the mapping list, the patched rdtsc sites and the
/// futex waiters keyed by address. A process has one; fork gives the child
/// a copy, vfork and clone(CLONE_VM) the same one, and execve a new one.
///
/// Processes sharing a context share its one vCPU: the registers in it are
/// those of `loaded`, and `Process.switchTo` saves them into that thread
/// before it loads another, whichever process each belongs to.
public final class MemoryContext {
    public let machine: UserMachine
    public var space: AddressSpace
    /// Patched rdtsc/rdtscp/cpuid instructions (PatchedInstructions).
    public var patchedSites: [UInt64: PatchedInstruction] = [:]
    /// Threads parked in futex waits on this memory, in the order they
    /// started waiting (threads of every process that shares it).
    public var futexOrder: [GuestThread] = []
    /// The MAP_SHARED ranges of this memory and what they show (`SharedMemory`).
    public var sharedViews: [SharedView] = []
    /// The thread whose registers, FS/GS base and XSAVE state the vCPU
    /// holds now; nil when none does (it left: exec or exit).
    weak var loaded: GuestThread?

    public init(machine: UserMachine, space: AddressSpace, loaded: GuestThread?) {
        self.machine = machine
        self.space = space
        self.loaded = loaded
        // Syscalls writing into a page of generated code move it back to
        // its writable phase first (`WriteXorExecute`).
        machine.memory.makeWritable = { [weak self] page in
            guard let self else { return false }
            return WriteXorExecute.makeWritable(self, page)
        }
    }

    /// Nobody uses this memory any more: its machine can serve another
    /// process (`MachinePool`).
    deinit { MachinePool.give(machine) }

    /// `thread` leaves this memory (its process execs or ends): the vCPU's
    /// registers are nobody's now, and it waits on no futex here.
    func leave(_ thread: GuestThread) {
        if loaded === thread { loaded = nil }
        futexOrder.removeAll { $0 === thread }
    }
}
