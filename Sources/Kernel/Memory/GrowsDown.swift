import KVMUser

/// MAP_GROWSDOWN mappings grow down when the program touches the page
/// just below them, as mm/mmap.c's expand_downwards does (Linux 6.x has no
/// distance-to-rsp check): the fault address must stay stack_guard_gap
/// (256 pages) above the mapping below, unless that one also grows down or
/// is inaccessible, and the grown mapping within RLIMIT_STACK (the guest's
/// own, 8 MiB as Linux's default when it set none). The new pages take the
/// mapping's protection and flags; the instruction runs again. Faults are
/// deterministic, so replay grows the same mappings at the same instructions.
enum GrowsDown {
    static let guardGap: UInt64 = 256 * 4096
    static let RLIMIT_STACK: Int32 = 3
    static let defaultStackLimit: UInt64 = 8 << 20

    /// Whether the fault was a growth (the mapping now covers the address).
    static func handleFault(_ p: Process, _ e: GuestException) -> Bool {
        guard e.vector == GuestException.pageFault, let code = e.errorCode, code & 1 == 0 else { return false }
        let address = e.address & ~4095
        guard address < GuestMemory.userLimit, p.space.mapping(containing: address) == nil,
              let above = p.space.mappings.first(where: { $0.start > address }), above.options.contains(.growsDown) else {
            return false
        }
        if let below = p.space.mappings.last(where: { $0.end <= address }),
           !below.options.contains(.growsDown), !below.protection.isEmpty, address - below.end < guardGap {
            return false
        }
        let limit = p.limits[RLIMIT_STACK]?.soft ?? defaultStackLimit
        guard above.end - address <= limit else { return false }
        var grown = above
        grown.start = address
        grown.end = above.start
        if grown.isFileBacked { return false }   // GROWSDOWN is anonymous only (mmap refuses it for files)
        do { try p.map(grown) } catch { return false }
        return true
    }
}
