import KVMUser

/// The bytes of a host file that a file-backed mapping is filled with:
/// the file's data extents over [base, base + size), the holes between
/// them reading as zeros. Recording finds the extents with SEEK_DATA and
/// SEEK_HOLE (`HostFile.dataExtents`); replay has them from the trace
/// (its stored range). A mapping of a 4 GiB sparse file with a few bytes
/// written costs those bytes, in the trace and in memory.
public struct FileRange: Equatable, Sendable {
    /// A data extent: its first byte's offset from `base`, and its length
    /// (the one type a lazily filled mapping reads them as).
    public typealias Extent = PageContent.Extent

    /// The name the trace stores it under (SHA-256 of `stored`).
    public var sha256: String
    /// File offset of the range's first byte, and its length, holes included.
    public var base: UInt64
    public var size: UInt64
    /// Sorted and disjoint, within the range; `data` holds their bytes one after the other.
    public var extents: [Extent]
    public var data: [UInt8]
    /// The encoded object the trace stores (recording only).
    public var stored: [UInt8]

    public init(sha256: String, base: UInt64, size: UInt64, extents: [Extent], data: [UInt8], stored: [UInt8] = []) {
        self.sha256 = sha256; self.base = base; self.size = size; self.extents = extents; self.data = data; self.stored = stored
    }

    /// One past the file offset of its last byte.
    public var end: UInt64 { base &+ size }

    /// Whether it holds the file's bytes [offset, offset + length).
    public func covers(offset: UInt64, length: UInt64) -> Bool {
        offset >= base && offset - base <= size && length <= size - (offset - base)
    }

    /// The range's bytes from file offset 0 when they are one extent (an
    /// ELF file is stored whole, so that its sections say where its code
    /// lies: `PatchedInstructions.codeOfMapping`); otherwise empty.
    public var wholeFile: [UInt8] {
        base == 0 && extents.count == 1 && extents[0].start == 0 && UInt64(data.count) == size ? data : []
    }

    /// Puts the file's bytes [offset, offset + length) at `address`,
    /// ignoring page protection. Reserved pages (a large private file
    /// mapping: `LazyFileMapping`) get them as their source, filled at
    /// their first touch, as Linux reads a file page at its first fault;
    /// other pages are written now (`GuestMemory.fill`): only the extents'
    /// bytes. The holes are left alone: the pages of a mapping being
    /// filled are fresh, so they read as zeros already. Record and replay
    /// both come here with the same range (replay's from the trace), so
    /// they take the same first-touch faults. The caller checks `covers`
    /// first.
    public func fill(_ memory: GuestMemory, at address: UInt64, offset: UInt64, length: UInt64) throws(GuestMemoryFault) {
        guard covers(offset: offset, length: length) else { return }
        let from = offset - base
        guard let content = PageContent(extents: extents, data: data, end: from + length) else {
            throw GuestMemoryFault(address: address)
        }
        for part in memory.attach(content, offset: from, at: address, length: length) {
            try write(memory, at: part.start, from: from + (part.start - address), to: from + (part.end - address))
        }
    }

    /// Writes the range's bytes [from, to) (offsets from `base`) at `address`.
    private func write(_ memory: GuestMemory, at address: UInt64, from: UInt64, to: UInt64) throws(GuestMemoryFault) {
        var at = 0
        for e in extents {
            defer { at += Int(e.length) }
            let s = max(e.start, from), t = min(e.start + e.length, to)
            guard s < t else { continue }
            let lo = at + Int(s - e.start), hi = at + Int(t - e.start)
            guard lo >= 0, hi <= data.count else { return }
            try memory.fill(address + (s - from), with: data[lo..<hi])
        }
    }
}
