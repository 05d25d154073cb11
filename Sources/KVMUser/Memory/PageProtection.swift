/// What user code may do with a page, as `mmap`'s PROT_* bits say it.
public struct PageProtection: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let read = PageProtection(rawValue: 1)
    public static let write = PageProtection(rawValue: 2)
    public static let execute = PageProtection(rawValue: 4)
    public static let none: PageProtection = []
    public static let rw: PageProtection = [.read, .write]
    public static let rx: PageProtection = [.read, .execute]
}

/// Bits of an x86-64 page-table entry (Intel SDM vol. 3, 4.5).
struct PTE {
    static let present: UInt64 = 1 << 0
    static let writable: UInt64 = 1 << 1
    static let user: UInt64 = 1 << 2
    static let accessed: UInt64 = 1 << 5
    static let dirty: UInt64 = 1 << 6
    static let noExecute: UInt64 = 1 << 63
    static let addressMask: UInt64 = 0x000f_ffff_ffff_f000

    /// A leaf entry for a user page. PROT_NONE pages keep an entry that is
    /// not present, so the frame stays owned by the mapping. Accessed and
    /// dirty are preset: the CPU would otherwise write them, which costs a
    /// trap per page under shadow paging.
    /// `user` false: a supervisor page (detrec's own, `UserMachine`).
    static func leaf(frame: UInt64, protection: PageProtection, user: Bool = true) -> UInt64 {
        var e = frame | ownsFrame | accessed | dirty | noExecute
        if user { e |= PTE.user }
        if protection.isEmpty { e &= ~present } else { e |= present }
        if protection.contains(.write) { e |= writable }
        if protection.contains(.execute) { e &= ~noExecute }
        return e
    }

    /// The guest's protection of the page (a debugger's hidden bits put back).
    static func protection(of entry: UInt64) -> PageProtection {
        let entry = real(entry)
        guard entry & present != 0 else { return .none }
        var p: PageProtection = [.read]
        if entry & writable != 0 { p.insert(.write) }
        if entry & noExecute == 0 { p.insert(.execute) }
        return p
    }

    /// An entry that holds a frame, present or not (PROT_NONE keeps its frame
    /// in an entry with a marker bit, bit 9, which the CPU ignores).
    static let ownsFrame: UInt64 = 1 << 9
}
