import KVMUser

/// One mapping of the guest's address space, as /proc/self/maps lists it.
public struct Mapping: Equatable, Sendable {
    public var start: UInt64
    public var end: UInt64
    public var protection: PageProtection
    public var shared: Bool
    /// A path, "[heap]", "[stack]", or "" for anonymous memory.
    public var name: String
    public var fileOffset: UInt64
    /// For a file mapping whose file ended inside it (or before it) when it
    /// was mapped: the file offset, page-rounded up, where the file ended.
    /// Pages from there on lie beyond the end of the file and raise SIGBUS
    /// (`BeyondFileEnd.swift`). An offset, so it holds through splits and
    /// moves; nil when the whole mapping is backed.
    public var fileEnd: UInt64?
    /// The vma flags madvise, mlock and mmap set (`MappingOptions`).
    public var options: MappingOptions = []
    /// The open file an mmap mapped, which MADV_DONTNEED and mremap read
    /// again (nil for anonymous memory and the loader's mappings).
    public var file: MappedFile?
    /// The NUMA policy mbind gave it (`MemoryPolicy.swift`); nil is the default.
    public var policy: MemoryPolicy?

    public init(start: UInt64, end: UInt64, protection: PageProtection, shared: Bool = false, name: String = "",
                fileOffset: UInt64 = 0, fileEnd: UInt64? = nil, options: MappingOptions = [], file: MappedFile? = nil) {
        self.start = start; self.end = end; self.protection = protection
        self.shared = shared; self.name = name; self.fileOffset = fileOffset; self.fileEnd = fileEnd
        self.options = options; self.file = file
    }

    public var pages: Int { Int((end - start) / 4096) }

    /// Backed by a file: only then does the offset move when it is split.
    public var isFileBacked: Bool { !name.isEmpty && !name.hasPrefix("[") }

    /// The part of this mapping from `at` on (the offset follows for files).
    func tail(from at: UInt64) -> Mapping {
        var m = self
        if isFileBacked { m.fileOffset += at - start }
        m.start = at
        return m
    }
}

/// Linux's vma flags that change what the guest sees later: at fork
/// (VM_WIPEONFORK, VM_DONTCOPY), under mlock (VM_LOCKED, VM_LOCKONFAULT),
/// on a fault below a stack (VM_GROWSDOWN), in a core dump (VM_DONTDUMP).
public struct MappingOptions: OptionSet, Sendable, Hashable {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }
    public static let wipeOnFork = MappingOptions(rawValue: 1 << 0)
    public static let dontFork = MappingOptions(rawValue: 1 << 1)
    public static let locked = MappingOptions(rawValue: 1 << 2)
    public static let lockOnFault = MappingOptions(rawValue: 1 << 3)
    public static let growsDown = MappingOptions(rawValue: 1 << 4)
    public static let dontDump = MappingOptions(rawValue: 1 << 5)
    public static let noReserve = MappingOptions(rawValue: 1 << 6)
}

/// The open file behind a file mapping (Linux's vma->vm_file): the same
/// description however the file is renamed or unlinked later. Compared by
/// identity, as two vmas of different struct files never merge.
public final class MappedFile: @unchecked Sendable, Equatable {
    public let open: OpenFile
    public init(_ open: OpenFile) { self.open = open }
    public static func == (a: MappedFile, b: MappedFile) -> Bool { a === b }
}

/// The guest's mappings, kept sorted and non-overlapping, and where new
/// ones go. Only bookkeeping: the page tables are changed by the caller
/// through `GuestMemory`.
public struct AddressSpace {
    public private(set) var mappings: [Mapping] = [] { didSet { generation &+= 1 } }
    /// Changes with every change of `mappings`: a preemption window ends at
    /// a syscall that changed the layout (its re-run needs the old tables).
    public private(set) var generation = 0
    /// Where top-down placement of new mappings starts (below the stack gap).
    public var mmapBase: UInt64
    /// The lowest address mmap hands out without MAP_FIXED (vm.mmap_min_addr).
    public var mmapMin: UInt64 = 0x10000
    public var brkStart: UInt64 = 0
    public var brk: UInt64 = 0
    /// Pages of writable and executable mappings now in their executable
    /// phase (`WriteXorExecute`); the others are writable and not executable.
    public var codePages: Set<UInt64> = []
    /// Flags every new mapping gets (mm->def_flags: mlockall(MCL_FUTURE)).
    public var futureOptions: MappingOptions = []

    public init(mmapBase: UInt64) {
        self.mmapBase = mmapBase
    }

    public static func pageUp(_ v: UInt64) -> UInt64? {
        let (r, o) = v.addingReportingOverflow(4095)
        return o ? nil : r & ~4095
    }

    /// The mapping containing `address`.
    public func mapping(containing address: UInt64) -> Mapping? {
        mappings.first { $0.start <= address && address < $0.end }
    }

    public func isFree(_ start: UInt64, _ end: UInt64) -> Bool {
        !mappings.contains { $0.start < end && start < $0.end }
    }

    /// Whether every byte of [start, end) is mapped.
    public func isFullyMapped(_ start: UInt64, _ end: UInt64) -> Bool {
        var at = start
        for m in mappings where m.end > at && m.start < end {
            if m.start > at { return false }
            at = m.end
            if at >= end { return true }
        }
        return at >= end
    }

    /// The highest free range of `length` bytes below `mmapBase` (Linux's
    /// top-down allocator), or at `hint` when that range is free.
    public func findFree(length: UInt64, hint: UInt64 = 0) -> UInt64? {
        if hint != 0, let h = AddressSpace.pageUp(hint), h >= mmapMin,
           h < mmapBase, length <= mmapBase - h, isFree(h, h + length) {
            return h
        }
        var top = mmapBase
        for m in mappings.reversed() where m.start < top {
            if m.end <= top, top - m.end >= length { return top - length }
            top = min(top, m.start)
        }
        return top >= mmapMin + length ? top - length : nil
    }

    /// Adds a mapping, replacing whatever overlapped it.
    public mutating func insert(_ m: Mapping) {
        remove(m.start, m.end)
        let i = mappings.firstIndex { $0.start >= m.end } ?? mappings.count
        mappings.insert(m, at: i)
        coalesce()
    }

    /// Joins neighbours that Linux would show as one mapping (same rights,
    /// same backing, contiguous file offsets).
    private mutating func coalesce() {
        var out: [Mapping] = []
        for m in mappings {
            if var last = out.last, last.end == m.start, last.protection == m.protection, last.shared == m.shared,
               last.name == m.name, last.fileEnd == m.fileEnd, last.options == m.options, last.file == m.file,
               last.policy == m.policy,
               m.name == "" || m.name.hasPrefix("[") || last.fileOffset + (last.end - last.start) == m.fileOffset {
                last.end = m.end
                out[out.count - 1] = last
            } else {
                out.append(m)
            }
        }
        mappings = out
    }

    /// Splits the mappings at `start` and `end`, and replaces each piece
    /// inside [start, end) with what `inside` makes of it (nil drops it).
    private mutating func rewrite(_ start: UInt64, _ end: UInt64, _ inside: (Mapping) -> Mapping?) {
        var out: [Mapping] = []
        for m in mappings {
            if m.end <= start || m.start >= end { out.append(m); continue }
            if m.start < start {
                var left = m
                left.end = start
                out.append(left)
            }
            var mid = m.tail(from: max(start, m.start))
            mid.end = min(end, m.end)
            if let kept = inside(mid) { out.append(kept) }
            if m.end > end {
                out.append(m.tail(from: end))
            }
        }
        mappings = out
    }

    /// Removes [start, end), splitting mappings that straddle its edges.
    public mutating func remove(_ start: UInt64, _ end: UInt64) {
        rewrite(start, end) { _ in nil }
    }

    /// Changes the protection of [start, end), splitting at its edges.
    public mutating func protect(_ start: UInt64, _ end: UInt64, _ protection: PageProtection) {
        rewrite(start, end) { m in
            var changed = m
            changed.protection = protection
            return changed
        }
        coalesce()
    }

    /// Changes the mappings of [start, end) with `change`, splitting at its
    /// edges (madvise and mlock setting vma flags).
    public mutating func update(_ start: UInt64, _ end: UInt64, _ change: (inout Mapping) -> Void) {
        rewrite(start, end) { m in
            var changed = m
            change(&changed)
            return changed
        }
        coalesce()
    }

    /// Moves the bookkeeping of [from, from+length) to `to` (mremap).
    public mutating func move(from: UInt64, length: UInt64, to: UInt64) {
        let moved = mappings.filter { $0.start < from + length && from < $0.end }.map { m -> Mapping in
            let s = max(m.start, from), e = min(m.end, from + length)
            var n = m.tail(from: s)
            n.start = s - from + to
            n.end = e - from + to
            return n
        }
        remove(from, from + length)
        for m in moved { insert(m) }
    }
}
