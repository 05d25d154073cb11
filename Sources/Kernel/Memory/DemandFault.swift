import KVMUser

/// Anonymous memory that costs nothing until touched, as Linux's: the
/// sanitizers reserve terabytes of shadow with MAP_NORESERVE, which fixed
/// frames and page tables for every page could never hold. Such mappings
/// are reserved ranges of `GuestMemory` (no page-table entries); the
/// first touch of a page by the guest faults here and maps it (with its
/// fault-around block) to fresh zero frames, and the instruction runs
/// again. Detrec's own accesses map pages the same way (`GuestMemory.hostSpan`).
/// Faults are deterministic, so replay takes the same ones; nothing goes
/// in the trace.
///
/// Which mappings: private anonymous ones with MAP_NORESERVE, and those of
/// `largeMapping` bytes or more (glibc's malloc mmaps chunks from 128 KiB
/// on; thread stacks, arenas, and brk growth of that size, `brkReserves`).
/// Their first touch is one fault per block that grows while the program
/// fills them in order (`FaultAround` in KVMUser), which is cheaper under
/// shadow paging than a page-table entry per page at mmap and a shadow
/// fault per page at the first touch (docs/preemption.md, first touch).
/// Smaller mappings get their frames at mmap as before: a VM exit through
/// the run loop costs more than the few shadow faults it would save.
enum DemandFault {
    /// From this size on, a private anonymous mapping is reserved even
    /// without MAP_NORESERVE.
    static let largeMapping: UInt64 = 128 << 10

    /// Whether `m`'s pages are reserved rather than given frames at once.
    static func reserves(_ m: Mapping) -> Bool {
        guard !m.shared, !m.isFileBacked else { return false }
        return m.options.contains(.noReserve) || m.end - m.start >= largeMapping
    }

    /// Whether `m`, a private file mapping, is reserved and its pages
    /// filled from the file at their first touch rather than all at mmap
    /// (as Linux reads a file's pages at their first fault): ld.so maps a
    /// whole library before it maps each segment over it, and a program
    /// touches a few dozen pages of libc's 2 MiB, a JVM a few of its 128 MiB
    /// of modules. Shared mappings stay filled at mmap (`SharedMemory`
    /// keeps them coherent with the file and other views), and so do locked
    /// ones (mlock faults every page in) and small ones, for which a fault
    /// (a VM exit) costs more than copying their few pages.
    static func reservesFile(_ m: Mapping) -> Bool {
        !m.shared && m.isFileBacked && !m.options.contains(.locked) && m.end - m.start >= largeMapping
    }

    /// Whether brk's growth by `bytes` is reserved (the heap is private
    /// anonymous memory; glibc grows it by at least 128 KiB at a time).
    static func brkReserves(_ bytes: UInt64) -> Bool { bytes >= largeMapping }

    /// Reserves the part of `m` within [from, to). Without MAP_NORESERVE
    /// the memory is committed, as Linux's overcommit heuristic does: more
    /// than the guest could ever get frames for is ENOMEM.
    static func reserve(_ p: Process, _ m: Mapping, from: UInt64, to: UInt64) throws(Errno) {
        let s = max(from, m.start), e = min(to, m.end)
        guard s < e else { return }
        let pages = Int((e - s) / 4096)
        if !m.options.contains(.noReserve), UInt64(pages) > p.memory.framesAvailable { throw .nomem }
        do { try p.memory.reserve(s, pages: pages, protection: m.protection) } catch { throw .nomem }
    }

    enum Outcome {
        /// Not a fault on an untouched reserved page the guest may access.
        case notMine
        /// The page has its frame; the instruction runs again.
        case mapped
        /// No frame is left: the process dies as Linux's OOM killer kills it.
        case outOfMemory(FatalSignal)
    }

    static func handleFault(_ p: Process, _ e: GuestException, rip: UInt64) -> Outcome {
        guard e.vector == GuestException.pageFault, let code = e.errorCode, code & 1 == 0,
              p.memory.isUntouchedReserved(e.address),
              let protection = p.memory.protection(at: e.address), !protection.isEmpty else { return .notMine }
        // A write to a read-only page, or a fetch from a non-executable
        // one, faults again once mapped, and is SIGSEGV then.
        // Committed memory takes 2 MiB a fault: its frames are promised
        // anyway, and a heap touched in random order pays a fault per 2 MiB.
        // A file mapping's pages are copied from the file: a fault maps no
        // more than Linux's fault-around (64 KiB), or runs growing from it.
        let m = p.space.mapping(containing: e.address)
        let sparse = m.map { $0.options.contains(.noReserve) || $0.isFileBacked } ?? true
        if p.memory.demandMap(e.address, block: sparse ? FaultAround.first : FaultAround.most) { return .mapped }
        p.report("out of guest memory at a page fault on 0x\(String(e.address, radix: 16)) (\(p.memory.framesAvailable) frames left): the process is killed with SIGKILL, as Linux's OOM killer would",
                 key: 0x2_0000_0040, rip: rip)
        return .outOfMemory(FatalSignal(signal: Signals.SIGKILL, code: Signals.SI_KERNEL, rip: rip, address: 0))
    }
}
