/// Page protection a debugger adds to see the guest's own accesses to a
/// page (watchpoints without debug registers, which never fire under PVM).
///
/// The guest's protection stays the truth: a protected page's entry keeps
/// the bits it hid in two bits the CPU ignores (9 is `ownsFrame`), so every
/// reader of an entry (`PTE.real`) sees the guest's rights: host accesses
/// with the guest's rights (syscall buffers), the protection Linux reports,
/// checkpoints. Only the vCPU sees the narrower entry and faults.
public enum DebugFault: Sendable, Equatable {
    /// Writes fault (the writable bit is cleared).
    case writes
    /// Every access faults (the present bit is cleared).
    case accesses
}

extension PTE {
    /// Present, hidden by a debugger.
    static let hiddenPresent: UInt64 = 1 << 10
    /// Writable, hidden by a debugger.
    static let hiddenWritable: UInt64 = 1 << 11

    /// The entry as the guest's own protection makes it.
    static func real(_ entry: UInt64) -> UInt64 {
        var e = entry & ~(hiddenPresent | hiddenWritable)
        if entry & hiddenPresent != 0 { e |= present }
        if entry & hiddenWritable != 0 { e |= writable }
        return e
    }

    /// The entry with the bits `fault` needs cleared (none it lacks).
    static func hiding(_ entry: UInt64, for fault: DebugFault) -> UInt64 {
        let e = real(entry)
        switch fault {
        case .writes:
            return e & writable != 0 && e & present != 0 ? (e & ~writable) | hiddenWritable : e
        case .accesses:
            return e & present != 0 ? (e & ~present) | hiddenPresent : e
        }
    }
}

extension GuestMemory {
    /// Protects exactly these pages (page-aligned addresses) for a
    /// debugger; others it protected get their entries back. Narrowing
    /// drops cached translations before the vCPU runs again.
    public func setDebugProtection(_ pages: [UInt64: DebugFault]) {
        for (page, _) in debugPages where pages[page] == nil { lift(page) }
        debugPages = pages
        for (page, fault) in pages { hide(page, fault) }
    }

    /// The pages a debugger protects now.
    public var debugProtectedPages: [UInt64: DebugFault] { debugPages }

    /// Whether a fault at `va` may be the debugger's: its page hides bits.
    public func isDebugProtected(_ va: UInt64) -> Bool {
        guard va < GuestMemory.userLimit else { return false }
        return tables.entry(va & ~4095) & (PTE.hiddenPresent | PTE.hiddenWritable) != 0
    }

    /// Gives the page holding `va` the guest's own entry until the next
    /// `rearmDebugProtection` (to run one instruction on it). Widening:
    /// no translation needs dropping.
    public func liftDebugProtection(_ va: UInt64) { lift(va & ~4095) }

    /// Protects again every page lifted since.
    public func rearmDebugProtection() {
        for (page, fault) in debugPages { hide(page, fault) }
    }

    /// After a mapping change in [start, start + pages): the new entries
    /// of protected pages hide their bits again.
    func reapplyDebugProtection(_ start: UInt64, pages: Int) {
        guard !debugPages.isEmpty, pages > 0 else { return }
        let end = start.saturatingAdd(pages: pages)
        for (page, fault) in debugPages where page >= start && page < end { hide(page, fault) }
    }

    private func lift(_ page: UInt64) {
        guard page < GuestMemory.userLimit, let slot = tables.leaf(page, create: false) else { return }
        slot.pointee = PTE.real(slot.pointee)
    }

    private func hide(_ page: UInt64, _ fault: DebugFault) {
        // A watched reserved page needs its frame for the entry to hide bits in.
        if isUntouchedReserved(page), protection(at: page)?.isEmpty == false { _ = demandMap(page) }
        guard page < GuestMemory.userLimit, let slot = tables.leaf(page, create: false),
              slot.pointee & PTE.ownsFrame != 0 else { return }
        let new = PTE.hiding(slot.pointee, for: fault)
        if new != slot.pointee {
            slot.pointee = new
            translationsChanged = true
        }
    }
}
