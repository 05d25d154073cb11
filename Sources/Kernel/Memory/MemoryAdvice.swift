import Glibc
import KVMUser

/// madvise as mm/madvise.c (Linux 6.18) has it. The advice applies to the
/// mapped parts of the range, mapping by mapping in address order: the
/// first mapping that refuses it ends the call with its error (those
/// before keep theirs), and a hole makes the result ENOMEM once the rest
/// is done. Only the advice that changes what the guest sees changes
/// state here:
///
/// - MADV_DONTNEED drops the pages: private anonymous memory reads as
///   zeros again, a file mapping that is not shared memory of the
///   recording reads the file again (its current contents), shared memory
///   keeps its pages (they are the object's, as shmem and the page cache
///   keep them on Linux).
/// - MADV_REMOVE punches a hole in the file (or the shared anonymous
///   object): those pages read as zeros everywhere.
/// - MADV_WIPEONFORK/KEEPONFORK, DONTFORK/DOFORK, DONTDUMP/DODUMP set vma
///   flags that fork (`afterFork`) and /proc/self/smaps honour.
/// - The rest (NORMAL, RANDOM, SEQUENTIAL, WILLNEED, FREE, COLD, PAGEOUT,
///   HUGEPAGE, NOHUGEPAGE, MERGEABLE, UNMERGEABLE, POPULATE_*,
///   GUARD_REMOVE) is advice about the host's caches, with Linux's checks.
///   MADV_FREE keeps the contents: Linux frees them only under memory
///   pressure, which a recording never sees.
enum MemoryAdvice {
    static let NORMAL: Int32 = 0, RANDOM: Int32 = 1, SEQUENTIAL: Int32 = 2, WILLNEED: Int32 = 3, DONTNEED: Int32 = 4
    static let FREE: Int32 = 8, REMOVE: Int32 = 9, DONTFORK: Int32 = 10, DOFORK: Int32 = 11
    static let MERGEABLE: Int32 = 12, UNMERGEABLE: Int32 = 13, HUGEPAGE: Int32 = 14, NOHUGEPAGE: Int32 = 15
    static let DONTDUMP: Int32 = 16, DODUMP: Int32 = 17, WIPEONFORK: Int32 = 18, KEEPONFORK: Int32 = 19
    static let COLD: Int32 = 20, PAGEOUT: Int32 = 21, POPULATE_READ: Int32 = 22, POPULATE_WRITE: Int32 = 23
    static let DONTNEED_LOCKED: Int32 = 24, COLLAPSE: Int32 = 25
    static let HWPOISON: Int32 = 100, SOFT_OFFLINE: Int32 = 101, GUARD_INSTALL: Int32 = 102, GUARD_REMOVE: Int32 = 103

    /// madvise_behavior_valid on an x86-64 kernel with KSM, THP and memory failure.
    static func isKnown(_ advice: Int32) -> Bool {
        (0...4).contains(advice) || (8...25).contains(advice) || (100...103).contains(advice)
    }

    static func madvise(_ c: SyscallCall) throws -> Int64 {
        let start = c.arg(0), advice = c.int(2), lengthIn = c.arg(1)
        guard isKnown(advice), start & 4095 == 0 else { throw Errno.inval }
        // A length that rounds up past the top (a small negative one) is EINVAL.
        guard let length = AddressSpace.pageUp(lengthIn), !start.addingReportingOverflow(length).overflow else {
            throw Errno.inval
        }
        guard length > 0 else { return 0 }
        let p = c.process
        switch advice {
        case HWPOISON, SOFT_OFFLINE:
            // As root Linux would poison the host's page: never done for a guest.
            p.report("madvise(MADV_HWPOISON/MADV_SOFT_OFFLINE) would inject a memory error into the host; returning EPERM",
                     key: 0x2_0000_0010, rip: c.rip)
            throw Errno.perm
        case GUARD_INSTALL, COLLAPSE:
            p.report("madvise(\(advice == COLLAPSE ? "MADV_COLLAPSE" : "MADV_GUARD_INSTALL")) is not supported; returning EINVAL",
                     key: 0x2_0000_0011 + UInt64(advice), rip: c.rip)
            throw Errno.inval
        default: break
        }
        let end = start + length
        let pieces: [Mapping] = p.space.mappings.compactMap { m in
            guard m.end > start, m.start < end else { return nil }
            var piece = m.tail(from: max(start, m.start))
            piece.end = min(end, m.end)
            return piece
        }
        let holes: Errno? = p.space.isFullyMapped(start, end) ? nil : .nomem
        if advice == POPULATE_READ || advice == POPULATE_WRITE {
            // madvise_populate faults the range in order and stops at the first hole.
            for m in pieces {
                if let error = populateError(m, write: advice == POPULATE_WRITE) { throw error }
            }
            if let holes { throw holes }
            return 0
        }
        // The mappings that take the advice, up to the first that refuses it.
        var taken: [Mapping] = []
        var refusal: Errno?
        for m in pieces {
            if let error = refusalOf(advice, m, process: p) { refusal = error; break }
            taken.append(m)
        }
        var result: Int64 = 0
        switch advice {
        case DONTNEED, DONTNEED_LOCKED: result = try discard(c, taken)
        case REMOVE: result = try remove(c, taken)
        case DONTFORK, DOFORK, WIPEONFORK, KEEPONFORK, DONTDUMP, DODUMP:
            for m in taken {
                p.space.update(m.start, m.end) { m in
                    switch advice {
                    case DONTFORK: m.options.insert(.dontFork)
                    case DOFORK: m.options.remove(.dontFork)
                    case WIPEONFORK: m.options.insert(.wipeOnFork)
                    case KEEPONFORK: m.options.remove(.wipeOnFork)
                    case DONTDUMP: m.options.insert(.dontDump)
                    default: m.options.remove(.dontDump)
                    }
                }
            }
        default: break   // advice about the host's caches: nothing the guest sees changes
        }
        if result < 0 { return result }
        if let refusal { throw refusal }
        if let holes { throw holes }
        return 0
    }

    /// Why a mapping refuses the advice (madvise_vma_behavior's checks), nil when it takes it.
    static func refusalOf(_ advice: Int32, _ m: Mapping, process p: Process) -> Errno? {
        let locked = m.options.contains(.locked)
        let privateAnonymous = !m.shared && !m.isFileBacked
        switch advice {
        case DONTNEED, FREE, COLD, PAGEOUT:
            // VM_LOCKED pages stay (only DONTNEED_LOCKED drops them).
            if locked { return .inval }
            // MADV_FREE is for anonymous memory only (shmem is not).
            if advice == FREE && !privateAnonymous { return .inval }
            return nil
        case REMOVE:
            if locked { return .inval }
            if !m.shared { return m.isFileBacked ? .acces : .inval }
            return nil
        case WIPEONFORK:
            return privateAnonymous ? nil : .inval
        default:
            return nil
        }
    }

    /// MADV_POPULATE_READ/WRITE: the access must be allowed (EINVAL), and
    /// pages past the end of a mapped file raise SIGBUS, which is EFAULT.
    static func populateError(_ m: Mapping, write: Bool) -> Errno? {
        if m.protection.isEmpty || (write && !m.protection.contains(.write)) { return .inval }
        if m.fileBackedEnd < m.end { return .fault }
        return nil
    }

    /// MADV_DONTNEED on `pieces`: fresh pages for the private ones (zeros,
    /// or the file read again in one host call), shared memory as it is.
    static func discard(_ c: SyscallCall, _ pieces: [Mapping]) throws -> Int64 {
        let p = c.process
        var rereads: [Mapping] = []
        for m in pieces where !isSharedMemory(p.mm, m.start, m.end) {
            // The old pages go, and with them their code phase and patches.
            p.space.codePages = p.space.codePages.filter { $0 < m.start || $0 >= m.end }
            PatchedInstructions.unpatch(p, from: m.start, to: m.end)
            try p.mapPages(of: m, from: m.start, to: m.end)
            if m.isFileBacked { rereads.append(m) }
        }
        guard !rereads.isEmpty else { return 0 }
        let r = try c.host { effects throws(Errno) -> Int64 in
            for m in rereads {
                let backed = min(m.end, m.fileBackedEnd)
                guard backed > m.start else { continue }
                try withReadableFD(m) { fd throws(Errno) in
                    try effects.fill(m.start, fromHostFD: fd, offset: m.fileOffset, length: backed - m.start)
                }
            }
            return 0
        }
        for m in rereads where m.protection.contains(.execute) && !WriteXorExecute.applies(m.protection) {
            PatchedInstructions.patch(p, from: m.start, to: m.end)
        }
        return r
    }

    /// The host descriptor of a mapping's file: the mmap's own, or the
    /// path opened again for the loader's mappings (recording only).
    static func withReadableFD(_ m: Mapping, _ body: (Int32) throws(Errno) -> Void) throws(Errno) {
        if let fd = m.file?.open.hostFD { return try body(fd) }
        let fd = open(m.name, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw Errno(errno) }
        defer { close(fd) }
        try body(fd)
    }

    /// Whether [start, end) shows shared memory of the recording (`SharedMemory`).
    static func isSharedMemory(_ mm: MemoryContext, _ start: UInt64, _ end: UInt64) -> Bool {
        mm.sharedViews.contains { $0.start < end && start < $0.end }
    }

    /// MADV_REMOVE: a hole punched in the file (fallocate PUNCH_HOLE|KEEP_SIZE,
    /// which needs the file open for writing: EACCES otherwise), or in the
    /// shared anonymous object; the pages read as zeros in every view.
    static func remove(_ c: SyscallCall, _ pieces: [Mapping]) throws -> Int64 {
        let p = c.process
        let files = pieces.filter(\.isFileBacked)
        if !files.isEmpty {
            let r = try c.host { _ throws(Errno) -> Int64 in
                for m in files {
                    guard let fd = m.file?.open.hostFD else { throw .inval }
                    guard Glibc.fcntl(fd, F_GETFL) & O_ACCMODE == O_RDWR else { throw .acces }
                    let punch: Int32 = 0x02 | 0x01   // FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
                    let r = hostSyscall(SYS.fallocate, Int(fd), Int(punch), Int(clamping: m.fileOffset), Int(clamping: m.end - m.start))
                    if r < 0 { return r }
                }
                return 0
            }
            if r < 0 { return r }
        }
        for m in pieces {
            SharedMemory.zero(p.mm, from: m.start, to: min(m.end, m.fileBackedEnd))
            if !isSharedMemory(p.mm, m.start, m.end) {
                // A read-only shared view of the file: its pages read the hole.
                try? p.memory.zero(m.start, count: Int(min(m.end, m.fileBackedEnd) - m.start), access: .kernel)
            }
        }
        return 0
    }

    /// What fork does with the flags madvise set, once the child has a
    /// copy of every mapping: MADV_DONTFORK ranges are not in the child,
    /// MADV_WIPEONFORK ranges are fresh zero pages there.
    static func afterFork(_ child: Process) {
        for m in child.space.mappings where m.options.contains(.dontFork) {
            child.unmap(m.start, m.end)
        }
        for m in child.space.mappings where m.options.contains(.wipeOnFork) {
            child.space.codePages = child.space.codePages.filter { $0 < m.start || $0 >= m.end }
            PatchedInstructions.unpatch(child, from: m.start, to: m.end)
            try? child.mapPages(of: m, from: m.start, to: m.end)
        }
    }
}
