import Glibc
import KVMUser

/// What MAP_SHARED mappings share: a file (writable MAP_SHARED of a
/// regular file, /dev/shm or a memfd), or the memory of one
/// MAP_SHARED|MAP_ANONYMOUS mmap, which fork hands down.
///
/// Each process has its own machine, so each mapping is its own copy of
/// the pages, kept coherent by the emulation. Only one thread runs at a
/// time, so the copy of the memory that runs is the freshest: its shared
/// pages are pushed into the object's `pages` when another memory takes
/// the vCPU, and that one pulls them in (`switchMemory`). Both are guest
/// state, the same in record and replay.
///
/// While recording, the file is kept coherent with read/write: before each
/// host call, pages that changed are written to the file (`writeBack`);
/// after it, the current process's mappings are read again from the file
/// and what changed is written into guest memory as the call's effect, so
/// the trace carries it and replay, which touches no file, gets the same
/// pages (`refresh`). A write(2) to the file is seen by another process's
/// mapping at that process's next host call. Processes outside the
/// recording that change the file are not seen (docs/architecture.md).
public final class SharedObject {
    /// Which file the object is, to find it again when another process
    /// maps it: the host file's device and inode, as the page cache knows
    /// it (recorded with the mmap, so replay finds the same object); the
    /// path, resolved against the working directory, for a trace that did
    /// not record them; or the open file of a memfd.
    enum Key: Hashable {
        case inode(device: UInt64, inode: UInt64)
        case path(String)
        case open(ObjectIdentifier)
        case anonymous
    }

    let key: Key
    /// The file, for writing pages back and reading them again
    /// (recording): a descriptor open for writing once any mapping of the
    /// object has one (`object(for:)`).
    fileprivate(set) var file: OpenFile?
    /// The content as last pushed from a process's memory, by page index
    /// (file offset / 4096).
    var pages: [UInt64: [UInt8]] = [:]
    /// Counts the changes to `pages`; `changed` says at which count each
    /// page last changed, so a memory that comes back to the vCPU pulls
    /// only what changed since it last pulled, not every page (postgres's
    /// 140 MiB of shared buffers at each process switch).
    private(set) var generation: UInt64 = 0
    private(set) var changed: [UInt64: UInt64] = [:]

    /// A page's new content, which the other memories pull.
    func store(_ index: UInt64, _ content: [UInt8]) {
        guard pages[index] != content else { return }
        pages[index] = content
        generation += 1
        changed[index] = generation
        if file != nil { unwritten.insert(index) }
    }
    /// What the host file holds of the pages detrec wrote to it or saw
    /// change there (recording only).
    var onFile: [UInt64: [UInt8]] = [:]
    /// Pages stored since write-back last had them: the only ones it
    /// looks at (not every page of a large view at every host call).
    var unwritten: Set<UInt64> = []
    /// Counts the host calls that may have changed the file
    /// (`SharedFileChanges`); a view whose `refreshedAt` differs reads it
    /// again at its process's next host call (recording only).
    var fileEpoch: UInt64 = 0

    /// The host file's device and inode, for matching a descriptor a
    /// call wrote to (recording only; fstat once).
    var hostInode: Inode? {
        if let known = inodeKnown { return known }
        switch key {
        case .inode(let device, let inode): inodeKnown = Inode(device: device, inode: inode)
        default: inodeKnown = file?.hostFD.flatMap(SharedObject.inode(of:))
        }
        return inodeKnown
    }
    private var inodeKnown: Inode?

    struct Inode: Equatable {
        let device: UInt64, inode: UInt64
        /// The 16 bytes an mmap's host call carries (`SharedMemory.identity(of:)`).
        var carried: [UInt8] { Bytes.u64(device) + Bytes.u64(inode) }
    }

    static func inode(of fd: Int32) -> Inode? {
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG else { return nil }
        return Inode(device: UInt64(st.st_dev), inode: UInt64(st.st_ino))
    }

    init(key: Key, file: OpenFile?) {
        self.key = key
        self.file = file
    }
}

/// A range of one process's memory that shows `object` from `offset`.
public struct SharedView {
    public var start: UInt64
    public var end: UInt64
    let object: SharedObject
    public var offset: UInt64
    /// The object's `generation` this view last pulled (0: never, so a new
    /// or split view pulls every page the object has).
    var pulled: UInt64 = 0
    /// The object's `fileEpoch` this view was last read again from the
    /// file at (nil: never, so a new or split view is, once).
    var refreshedAt: UInt64?
    /// Whether the guest may have written the view: false for a read-only
    /// mapping until mprotect makes it writable, so the push that looks
    /// for the guest's writes skips it (a large read-only database file).
    var guestWritable = true
    /// A read-only mapping of a file not open for writing: mprotect cannot
    /// make it writable (EACCES), as Linux's VM_MAYWRITE.
    var mayWrite = true
}

enum SharedMemory {
    /// The object a new MAP_SHARED mapping shows: the one the recording
    /// already has for this file, or a new one.
    /// `identity` is the file's device and inode (`identity(of:)`), as the
    /// mmap's host call carried it.
    static func object(for file: OpenFile?, identity: [UInt8]? = nil, process p: Process) -> SharedObject {
        guard let file else { return SharedObject(key: .anonymous, file: nil) }
        forgetUnmapped(p.family)
        let key: SharedObject.Key
        if file.path.hasPrefix("memfd:") || file.path.isEmpty {
            key = .open(ObjectIdentifier(file))
        } else if let identity, identity.count == 16 {
            key = .inode(device: Bytes.u64(identity, at: 0), inode: Bytes.u64(identity, at: 8))
        } else {
            key = .path(WorkingDirectory.resolve(file.path, against: p.cwd.path))
        }
        if let known = p.family.sharedObjects[key] {
            // A read-only mapping may have made the object: write-back needs a writable descriptor.
            if let old = known.file, !openForWriting(old), openForWriting(file) { known.file = file }
            return known
        }
        let object = SharedObject(key: key, file: file)
        p.family.sharedObjects[key] = object
        return object
    }

    /// Whether the host descriptor is open for reading and writing
    /// (recording; false in replay, which has none and writes no file).
    static func openForWriting(_ file: OpenFile) -> Bool {
        guard let fd = file.hostFD else { return false }
        return Glibc.fcntl(fd, F_GETFL) & O_ACCMODE == O_RDWR
    }

    /// The host file's device and inode, 16 bytes for `HostEffects.carry`
    /// (recording only); nil when fstat fails.
    static func identity(of fd: Int32) -> [UInt8]? {
        var st = stat()
        guard fstat(fd, &st) == 0 else { return nil }
        return SharedObject.Inode(device: UInt64(st.st_dev), inode: UInt64(st.st_ino)).carried
    }

    /// File objects no process maps any more leave the recording, as the
    /// page cache's pages belong to the file then: their pages went to the
    /// file at the host call that preceded (`writeBack`), and a file made
    /// later under the same name, or on a reused inode, is another object
    /// that starts from what its file holds. Decided from guest state
    /// alone, the same in record and replay.
    static func forgetUnmapped(_ family: ProcessFamily) {
        guard !family.sharedObjects.isEmpty else { return }
        var mapped: Set<ObjectIdentifier> = []
        var seen: Set<ObjectIdentifier> = []
        for p in family.processes where seen.insert(ObjectIdentifier(p.mm)).inserted {
            for view in p.mm.sharedViews { mapped.insert(ObjectIdentifier(view.object)) }
        }
        family.sharedObjects = family.sharedObjects.filter { mapped.contains(ObjectIdentifier($0.value)) }
    }

    /// Pages of `view` one at a time: (address, page index in the object).
    static func forEachPage(_ view: SharedView, from: UInt64? = nil, to: UInt64? = nil,
                            _ body: (UInt64, UInt64) -> Void) {
        var at = max(view.start, from ?? view.start)
        let end = min(view.end, to ?? view.end)
        while at < end {
            body(at, (view.offset + (at - view.start)) / 4096)
            at += 4096
        }
    }

    /// The memory's shared pages go into their objects (it is the freshest copy).
    /// When two views of this memory show the same page (two attachments
    /// of one segment), the one that changed it wins over the stale one.
    /// `filesOnly`: only views of files (around a host call, for
    /// `writeBack`; anonymous memory only needs pushing when another memory
    /// takes the vCPU). `hostWrites`: the range is what a host call just
    /// wrote, which may be in views the guest cannot write (a
    /// /proc/self/mem write, a file's change read again): the only push
    /// that looks at those, since nothing else changes them. Anywhere
    /// else, a page of a read-only view that its object lacks shows the
    /// file, and storing it would write it back: an munmap of a
    /// MAP_SHARED read-only view of a sparse file would fill its holes.
    static func push(_ mm: MemoryContext, from: UInt64? = nil, to: UInt64? = nil, filesOnly: Bool = false, hostWrites: Bool = false) {
        // Only views in the range: a host call's write elsewhere must not
        // harvest (and so arm) the dirty page log, which makes KVM
        // write-protect every page the guest writes from then on.
        let views = mm.sharedViews.filter { v in
            (!filesOnly || v.object.file != nil) && (v.guestWritable || (hostWrites && from != nil))
                && v.start < (to ?? v.end) && (from ?? v.start) < v.end
        }
        guard !views.isEmpty else { return }
        var page = [UInt8](repeating: 0, count: 4096)
        var before: [PageKey: [UInt8]] = [:]
        // Only two views of one object can show a page twice.
        let objects = Set(mm.sharedViews.map { ObjectIdentifier($0.object) })
        let twice = objects.count < mm.sharedViews.count
        // A page nobody wrote since a push last looked at it still holds
        // what that push stored (or, never written, what the view pulled).
        let written = mm.machine.memory.writtenPages()
        for view in views {
            forEachPage(view, from: from, to: to) { address, index in
                guard written.take(address) else { return }
                let ok = page.withUnsafeMutableBytes { b in
                    (try? mm.machine.memory.read(into: b, from: address, access: .kernel)) != nil
                }
                guard ok else { return }
                guard twice else {
                    if !same(page, view.object.pages[index]) { view.object.store(index, page) }
                    return
                }
                let key = PageKey(object: ObjectIdentifier(view.object), index: index)
                let prior = before[key] ?? view.object.pages[index] ?? []
                if before[key] == nil { before[key] = prior }
                if page != prior { view.object.store(index, page) }
            }
        }
    }

    /// Whether a page reads as `stored` (memcmp: this runs for every page
    /// of every file view around every host call).
    static func same(_ page: [UInt8], _ stored: [UInt8]?) -> Bool {
        guard let stored, stored.count == page.count else { return false }
        return page.withUnsafeBytes { a in
            stored.withUnsafeBytes { b in
                guard let x = a.baseAddress, let y = b.baseAddress else { return a.count == b.count }
                return memcmp(x, y, a.count) == 0
            }
        }
    }

    struct PageKey: Hashable {
        let object: ObjectIdentifier
        let index: UInt64
    }

    /// The objects' pages come into the memory that is about to run.
    /// Only pages changed since the view last pulled: the memory already
    /// holds the rest (it pulled them, or they are its own).
    static func pull(_ mm: MemoryContext) {
        for i in mm.sharedViews.indices {
            let view = mm.sharedViews[i]
            let object = view.object
            guard view.pulled < object.generation else { continue }
            let first = view.offset / 4096
            let pages = (view.end - view.start) / 4096
            for (index, at) in object.changed where at > view.pulled && index >= first && index - first < pages {
                guard let content = object.pages[index] else { continue }
                let address = view.start + (index - first) * 4096
                guard let now = try? mm.machine.memory.read(address, count: 4096, access: .kernel), now != content else { continue }
                try? mm.machine.memory.write(address, content, access: .kernel)
            }
            mm.sharedViews[i].pulled = object.generation
        }
    }

    /// Another memory takes the vCPU.
    static func switchMemory(from old: MemoryContext, to new: MemoryContext) {
        guard old !== new, !old.sharedViews.isEmpty || !new.sharedViews.isEmpty else { return }
        push(old)
        pull(new)
    }

    /// Pages of file objects that changed since the file last had them go
    /// to the file (recording only). Objects of every process count: a
    /// process that ran before may have left some.
    static func writeBack(_ family: ProcessFamily) {
        for object in family.sharedObjects.values where !object.unwritten.isEmpty {
            guard let fd = object.file?.hostFD else { continue }
            var left: Set<UInt64> = []
            for index in object.unwritten {
                guard let content = object.pages[index], !same(content, object.onFile[index]) else { continue }
                let (offset, overflow) = index.multipliedReportingOverflow(by: 4096)
                guard !overflow, offset <= UInt64(Int64.max) else { continue }
                // Never past the file's end: a mapping does not grow the
                // file (the page goes once the file has grown to it).
                var st = stat()
                guard fstat(fd, &st) == 0, Int64(offset) < Int64(st.st_size) else { left.insert(index); continue }
                let n = min(4096, Int(Int64(st.st_size) - Int64(offset)))
                let written = content.withUnsafeBytes { pwrite(fd, $0.baseAddress, n, off_t(offset)) }
                if written == n { object.onFile[index] = content } else { left.insert(index) }
            }
            object.unwritten = left
        }
    }

    /// The current process's file mappings that a host call may have
    /// changed since (`SharedFileChanges`) read again from their files;
    /// what changed goes into guest memory through `effects`, so replay
    /// sees it (recording only).
    static func refresh(_ mm: MemoryContext, _ effects: inout HostEffects) {
        var fresh = [UInt8](repeating: 0, count: 4096)
        for i in mm.sharedViews.indices {
            let view = mm.sharedViews[i]
            guard let fd = view.object.file?.hostFD, view.refreshedAt != view.object.fileEpoch else { continue }
            mm.sharedViews[i].refreshedAt = view.object.fileEpoch
            forEachPage(view) { address, index in
                let (offset, overflow) = index.multipliedReportingOverflow(by: 4096)
                guard !overflow, offset <= UInt64(Int64.max) else { return }
                let n = fresh.withUnsafeMutableBytes { pread(fd, $0.baseAddress, 4096, off_t(offset)) }
                guard n >= 0 else { return }
                // Past the file's end a page reads as zeros.
                if n < 4096 { fresh.replaceSubrange(n..<4096, with: repeatElement(0, count: 4096 - n)) }
                // Every view compares for itself: two views of one file in
                // this memory both show the change.
                guard let now = try? mm.machine.memory.read(address, count: 4096, access: .kernel), !same(now, fresh) else { return }
                view.object.onFile[index] = fresh
                // Whatever the view's protection, as Linux's page cache
                // (replay writes it so: `HostWorld.host`'s sharedFiles).
                try? effects.writeForced(address, fresh)
            }
        }
    }

    /// [from, to) of the memory's shared views reads as zeros, in the
    /// objects too (MADV_REMOVE punched a hole there; the file has it already).
    static func zero(_ mm: MemoryContext, from: UInt64, to: UInt64) {
        guard from < to else { return }
        let zeros = [UInt8](repeating: 0, count: 4096)
        for view in mm.sharedViews where view.start < to && from < view.end {
            forEachPage(view, from: from, to: to) { address, index in
                try? mm.machine.memory.zero(address, count: 4096, access: .kernel)
                view.object.store(index, zeros)
                if view.object.file != nil { view.object.onFile[index] = zeros }
            }
        }
    }

    /// `[start, end)` leaves the memory's shared views (munmap, a mapping
    /// over it, exec): its pages are pushed first, as munmap writes back.
    static func unmapped(_ mm: MemoryContext, _ start: UInt64, _ end: UInt64) {
        guard mm.sharedViews.contains(where: { $0.start < end && start < $0.end }) else { return }
        push(mm, from: start, to: end)
        var kept: [SharedView] = []
        for v in mm.sharedViews {
            guard v.start < end && start < v.end else { kept.append(v); continue }
            if v.start < start { kept.append(SharedView(start: v.start, end: start, object: v.object, offset: v.offset)) }
            if end < v.end { kept.append(SharedView(start: end, end: v.end, object: v.object, offset: v.offset + (end - v.start))) }
        }
        mm.sharedViews = kept
    }

    /// FUTEX_WAKE on shared memory: up to `count` waiters on the same word
    /// of the same object, in any process of the recording; -EINVAL when
    /// it meets a PI waiter on the word first, as `GuestThread.wake`.
    static func wake(_ family: ProcessFamily, _ key: (ObjectIdentifier, UInt64), count: Int, bitset: UInt32) -> Int {
        var woken = 0
        var refused = false
        var seen: Set<ObjectIdentifier> = []
        for p in family.processes where !refused && p.zombieStatus == nil && seen.insert(ObjectIdentifier(p.mm)).inserted {
            let mm = p.mm
            refused = mm.wakeWaiters(count: count, bitset: bitset, woken: &woken) { address in
                futexKey(mm, address).map { $0 == key } ?? false
            }
        }
        return refused ? -Int(EINVAL) : woken
    }

    /// The object and page a futex word lies in, when it is shared memory:
    /// FUTEX_WAKE without FUTEX_PRIVATE_FLAG reaches waiters of every
    /// process that maps the same page.
    static func futexKey(_ mm: MemoryContext, _ address: UInt64) -> (ObjectIdentifier, UInt64)? {
        guard let v = mm.sharedViews.first(where: { $0.start <= address && address < $0.end }) else { return nil }
        return (ObjectIdentifier(v.object), v.offset + (address - v.start))
    }
}
