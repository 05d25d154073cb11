import Glibc
import KVMUser

/// A System V shared memory segment: its pages are a `SharedObject`, the
/// same construct MAP_SHARED|MAP_ANONYMOUS memory uses, so every
/// attachment in every recorded process is kept coherent by
/// `SharedMemory` (pushed when a memory leaves the vCPU, pulled when one
/// takes it) and replay computes the same pages without any host IPC.
final class SharedMemorySegment: IPCObject {
    var permission = IPCPermission(key: 0, uid: 0, gid: 0, cuid: 0, cgid: 0, mode: 0, seq: 0)
    let size: UInt64
    let object = SharedObject(key: .anonymous, file: nil)
    var creator: Int32, lastPID: Int32 = 0
    var attachTime: Int64 = 0, detachTime: Int64 = 0, changeTime: Int64

    static let SHM_DEST: UInt32 = 0o1000, SHM_LOCKED: UInt32 = 0o2000

    init(size: UInt64, creator: Int32, now: Int64) {
        self.size = size
        self.creator = creator
        changeTime = now
    }

    var pages: UInt64 { (size + 4095) / 4096 }

    /// shm_nattch: the attachments (views; a partial munmap splits one in
    /// two, as a vma split counts twice on Linux) in the live processes.
    func attachments(_ family: ProcessFamily) -> Int {
        var seen: Set<ObjectIdentifier> = []
        var n = 0
        for p in family.processes where p.zombieStatus == nil && seen.insert(ObjectIdentifier(p.mm)).inserted {
            n += p.mm.sharedViews.filter { $0.object === object }.count
        }
        return n
    }
}

/// shmget, shmat, shmdt and shmctl (ipc/shm.c), emulated in `IPCNamespace`.
enum SharedMemorySegments {
    static let SHM_RDONLY: Int32 = 0o10000, SHM_RND: Int32 = 0o20000, SHM_REMAP: Int32 = 0o40000, SHM_EXEC: Int32 = 0o100000
    static let SHM_HUGETLB: Int32 = 0o4000
    static let SHM_LOCK: Int32 = 11, SHM_UNLOCK: Int32 = 12, SHM_STAT: Int32 = 13, SHM_INFO: Int32 = 14, SHM_STAT_ANY: Int32 = 15
    /// Linux's defaults: SHMMAX and SHMALL (ULONG_MAX - 2^24), SHMMNI.
    static let maxSize: UInt64 = UInt64.max - (1 << 24), maxSegments = 4096

    static func register(_ t: inout SyscallTable) {
        let note = "emulated inside the recording (processes outside it do not see the segments); no SHM_HUGETLB"
        t.add(SYS.shmget, .emulated, note: note, shmget)
        t.add(SYS.shmat, .emulated, note: "attachments stay coherent between recorded processes as MAP_SHARED memory does", shmat)
        t.add(SYS.shmdt, .emulated, shmdt)
        t.add(SYS.shmctl, .emulated, note: "IPC_STAT, IPC_SET, IPC_RMID (destroyed at the last detach), IPC_INFO, SHM_INFO, SHM_STAT(_ANY), SHM_LOCK/UNLOCK", shmctl)
    }

    /// Segments removed with IPC_RMID go once nothing attaches them
    /// (shm_destroy at the last shm_close: a detach, an exec, an exit).
    static func collect(_ family: ProcessFamily) {
        let ns = family.ipc
        for seg in ns.segments.byIndex.values where seg.permission.mode & SharedMemorySegment.SHM_DEST != 0 && seg.attachments(family) == 0 {
            ns.segments.remove(seg)
        }
    }

    static func shmget(_ c: SyscallCall) throws -> Int64 {
        let p = c.process, ns = p.family.ipc
        collect(p.family)
        let key = c.int(0), size = c.arg(1), flags = c.int(2)
        let who = ns.credentials(c)
        let id = try IPCGet.get(&ns.segments, key: key, flags: flags, who: who, limit: maxSegments,
                                moreChecks: { (seg: SharedMemorySegment) throws(Errno) in if seg.size < size { throw .inval } },
                                make: { () throws(Errno) -> SharedMemorySegment in
            guard size >= 1, size <= maxSize else { throw .inval }
            if flags & SHM_HUGETLB != 0 {
                p.report("shmget with SHM_HUGETLB is not supported; returning EINVAL", key: 0x1_5000_0001, rip: c.rip)
                throw .inval
            }
            let now = IPCNamespace.now(c)
            return SharedMemorySegment(size: size, creator: p.pid, now: now)
        })
        return Int64(id)
    }

    static func shmat(_ c: SyscallCall) throws -> Int64 {
        let p = c.process, ns = p.family.ipc
        collect(p.family)
        let id = c.int(0), flags = c.int(2)
        var address = c.arg(1)
        guard id >= 0 else { throw Errno.inval }
        if address != 0 {
            if address & 4095 != 0 {
                guard flags & SHM_RND != 0 else { throw Errno.inval }
                address &= ~4095
                if address == 0 && flags & SHM_REMAP != 0 { throw Errno.inval }
            }
        } else if flags & SHM_REMAP != 0 {
            throw Errno.inval
        }
        var protection: PageProtection = [.read]
        var access: Int32 = 0o444
        if flags & SHM_RDONLY == 0 { protection.insert(.write); access |= 0o222 }
        if flags & SHM_EXEC != 0 { protection.insert(.execute); access |= 0o111 }
        guard let seg = ns.segments.object(id) else { throw Errno.inval }
        guard seg.permission.allows(access, ns.credentials(c)) else { throw Errno.acces }
        let length = seg.pages * 4096
        let start: UInt64
        if address != 0 {
            guard address < GuestMemory.userLimit, length <= GuestMemory.userLimit - address else { throw Errno.inval }
            if flags & SHM_REMAP == 0, !p.space.isFree(address, address + length) { throw Errno.inval }
            p.unmap(address, address + length)
            start = address
        } else {
            guard let free = p.space.findFree(length: length) else { throw Errno.nomem }
            start = free
        }
        let hex = String(UInt32(bitPattern: seg.permission.key), radix: 16)
        let name = "/SYSV" + String(repeating: "0", count: max(0, 8 - hex.count)) + hex + " (deleted)"
        if p.mm.sharedViews.contains(where: { $0.object === seg.object }) {
            // Two ranges of one memory would need one frame behind both;
            // each is its own copy until the next process switch.
            p.report("shmat of a segment this process already attaches: writes through one attachment are not seen through the other at once",
                     key: 0x1_5000_0002, rip: c.rip)
        }
        // The freshest copy of what this memory's views show goes in first.
        SharedMemory.push(p.mm)
        try p.map(Mapping(start: start, end: start + length, protection: protection, shared: true, name: name, fileOffset: 0))
        let view = SharedView(start: start, end: start + length, object: seg.object, offset: 0)
        p.mm.sharedViews.append(view)
        // What other processes (or this one's other attachments) left in the segment.
        SharedMemory.forEachPage(view) { at, index in
            if let content = seg.object.pages[index] { try? p.machine.memory.write(at, content, access: .kernel) }
        }
        if protection.contains(.execute) && !WriteXorExecute.applies(protection) { PatchedInstructions.patch(p, from: start, to: start + length) }
        seg.attachTime = IPCNamespace.now(c)
        seg.lastPID = p.pid
        return Int64(start)
    }

    /// The segment whose pages `view` shows, if it shows one.
    static func segment(_ ns: IPCNamespace, _ view: SharedView) -> SharedMemorySegment? {
        ns.segments.byIndex.values.first { $0.object === view.object }
    }

    static func shmdt(_ c: SyscallCall) throws -> Int64 {
        let p = c.process, ns = p.family.ipc
        let address = c.arg(0)
        guard address & 4095 == 0 else { throw Errno.inval }
        // The first attachment from `address` whose offset says it starts
        // there; then every part of it up to the segment's size (do_shmdt).
        let candidates = p.mm.sharedViews.filter { $0.start >= address && $0.offset == $0.start - address }.sorted { $0.start < $1.start }
        guard let first = candidates.first(where: { segment(ns, $0) != nil }), let seg = segment(ns, first) else { throw Errno.inval }
        let end = address &+ seg.pages * 4096
        for v in candidates where v.object === seg.object && v.end <= end { p.unmap(v.start, v.end) }
        seg.detachTime = IPCNamespace.now(c)
        seg.lastPID = p.pid
        collect(p.family)
        return 0
    }

    static func shmctl(_ c: SyscallCall) throws -> Int64 {
        let p = c.process, ns = p.family.ipc
        collect(p.family)
        let id = c.int(0), command = c.int(1), buffer = c.arg(2)
        guard command >= 0, id >= 0 else { throw Errno.inval }
        switch command {
        case IPCPermission.IPC_INFO:
            // struct shminfo64: shmmax, shmmin, shmmni, shmseg, shmall, 4 unused.
            let info = [maxSize, 1, UInt64(maxSegments), UInt64(maxSegments), maxSize, 0, 0, 0, 0].flatMap(Bytes.u64)
            try c.write(buffer, info)
            return Int64(ns.segments.highestIndex)
        case SHM_INFO:
            // struct shm_info: used_ids, then shm_tot, shm_rss, shm_swp and two swap counters.
            let segments = Array(ns.segments.byIndex.values)
            let total = segments.reduce(0) { $0 + $1.pages }
            let resident = segments.reduce(0) { $0 + UInt64($1.object.pages.count) }
            try c.write(buffer, Bytes.i32(Int32(segments.count)) + [0, 0, 0, 0] + [total, resident, 0, 0, 0].flatMap(Bytes.u64))
            return Int64(ns.segments.highestIndex)
        case IPCPermission.IPC_STAT, SHM_STAT, SHM_STAT_ANY:
            guard let seg = command == IPCPermission.IPC_STAT ? ns.segments.object(id) : ns.segments.object(index: id) else { throw Errno.inval }
            if command != SHM_STAT_ANY, !seg.permission.allows(0o444, ns.credentials(c)) { throw Errno.acces }
            var b = seg.permission.bytes + Bytes.u64(seg.size)
            b += [seg.attachTime, seg.detachTime, seg.changeTime].flatMap(IPCBytes.i64)
            b += Bytes.i32(seg.creator) + Bytes.i32(seg.lastPID) + Bytes.u64(UInt64(seg.attachments(p.family))) + Bytes.u64(0) + Bytes.u64(0)
            return try IPCNamespace.stat(c, buffer, b, returning: command == IPCPermission.IPC_STAT ? 0 : Int64(ns.segments.id(of: seg) ?? 0))
        case IPCPermission.IPC_SET:
            let given = try c.read(buffer, count: IPCPermission.size)
            guard let seg = ns.segments.object(id) else { throw Errno.inval }
            guard seg.permission.ownedBy(ns.credentials(c)) else { throw Errno.perm }
            seg.permission.set(from: given)
            seg.changeTime = IPCNamespace.now(c)
            return 0
        case IPCPermission.IPC_RMID:
            guard let seg = ns.segments.object(id) else { throw Errno.inval }
            guard seg.permission.ownedBy(ns.credentials(c)) else { throw Errno.perm }
            seg.permission.mode |= SharedMemorySegment.SHM_DEST
            seg.permission.key = 0
            collect(p.family)
            return 0
        case SHM_LOCK, SHM_UNLOCK:
            // Pages stay in memory anyway; the flag shows in IPC_STAT's mode.
            // The owner or creator, or CAP_IPC_LOCK (not CAP_SYS_ADMIN).
            guard let seg = ns.segments.object(id) else { throw Errno.inval }
            let who = ns.credentials(c)
            guard who.credentials.capable(14) || who.uid == seg.permission.uid || who.uid == seg.permission.cuid else { throw Errno.perm }
            if command == SHM_LOCK { seg.permission.mode |= SharedMemorySegment.SHM_LOCKED } else { seg.permission.mode &= ~SharedMemorySegment.SHM_LOCKED }
            return 0
        default:
            throw Errno.inval
        }
    }
}
