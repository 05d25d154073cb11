import Glibc

/// The recording's System V IPC namespace: shared memory segments,
/// semaphore sets and message queues, with ids and keys as Linux's
/// ipc/util.c hands them out in a fresh namespace. It is emulated, not
/// the host's: objects live inside the recording (every recorded process
/// sees them, processes outside do not), nothing is left on the host when
/// the recording ends, and replay, which computes the same state from the
/// same calls, touches no host IPC. Only the clock (the *_time
/// fields) comes from the host: the structs that show it go through the trace.
final class IPCNamespace {
    var segments = IPCTable<SharedMemorySegment>()
    var semaphoreSets = IPCTable<SemaphoreSet>()
    var messageQueues = IPCTable<MessageQueue>()
    /// Sets and queues removed while threads waited on them, until each has seen EIDRM.
    var removedQueues: [MessageQueue] = []
    var removedSets: [SemaphoreSet] = []
    /// SEM_UNDO adjustments by process id (threads share them, fork starts
    /// without, exec keeps them): [set id: [semaphore: adjustment]].
    var undo: [Int32: [Int32: [Int: Int]]] = [:]
    /// The calling thread's emulated credentials (the same in replay).
    func credentials(_ c: SyscallCall) -> IPCCaller {
        IPCCaller(c.process.current.credentials)
    }

    /// The wall clock in seconds, for shm_atime, sem_otime, msg_stime and
    /// the like. Only the recording reads the clock: the times reach the
    /// guest only through `stat`, whose bytes replay takes from the trace.
    static func now(_ c: SyscallCall) -> Int64 {
        c.world.isReplaying ? 0 : Int64(time(nil))
    }

    /// An IPC_STAT-like struct (`bytes`, holding the times) written to the
    /// guest as the call's host part, so the trace carries it.
    static func stat(_ c: SyscallCall, _ address: UInt64, _ bytes: [UInt8], returning result: Int64) throws -> Int64 {
        try c.checkWritable(address, count: bytes.count)
        return try c.host { effects throws(Errno) -> Int64 in
            try effects.write(address, bytes)
            return result
        }
    }
}

/// The System V IPC calls (and POSIX message queues), one family.
enum SystemVIPC {
    static func register(_ t: inout SyscallTable) {
        SharedMemorySegments.register(&t)
        Semaphores.register(&t)
        MessageQueues.register(&t)
        PosixMessageQueues.register(&t)
    }

    /// A process ended: its SEM_UNDO adjustments apply, and segments
    /// removed with IPC_RMID that it held last go.
    static func processEnded(_ p: Process) {
        guard p.family.ipcState != nil else { return }
        Semaphores.processEnded(p)
        SharedMemorySegments.collect(p.family)
    }
}

extension ProcessFamily {
    var ipc: IPCNamespace {
        if let ipcState { return ipcState }
        let made = IPCNamespace()
        ipcState = made
        return made
    }
}

/// struct ipc64_perm (48 bytes on x86-64) and its checks (ipcperms).
struct IPCPermission {
    var key: Int32
    var uid: UInt32, gid: UInt32, cuid: UInt32, cgid: UInt32
    /// The low 9 bits are the rights; SHM_DEST and SHM_LOCKED ride above.
    var mode: UInt32
    var seq: UInt16

    static let IPC_CREAT: Int32 = 0o1000, IPC_EXCL: Int32 = 0o2000, IPC_NOWAIT: Int32 = 0o4000
    static let IPC_RMID: Int32 = 0, IPC_SET: Int32 = 1, IPC_STAT: Int32 = 2, IPC_INFO: Int32 = 3
    static let size = 48

    var bytes: [UInt8] {
        var b = Bytes.i32(key) + Bytes.u32(uid) + Bytes.u32(gid) + Bytes.u32(cuid) + Bytes.u32(cgid) + Bytes.u32(mode)
        b += IPCBytes.u16(seq) + [0, 0, 0, 0, 0, 0] + [UInt8](repeating: 0, count: 16)
        return b
    }

    /// Whether the caller may do what the low 9 bits of `flag` ask
    /// (ipcperms): the owner's, a group member's (in_group_p: the fsgid or a
    /// supplementary group) or the others' rights, or CAP_IPC_OWNER.
    func allows(_ flag: Int32, _ who: IPCCaller) -> Bool {
        let requested = UInt32(truncatingIfNeeded: (flag >> 6) | (flag >> 3) | flag) & 7
        var granted = mode
        if who.uid == cuid || who.uid == uid {
            granted >>= 6
        } else if who.credentials.inGroup(cgid) || who.credentials.inGroup(gid) {
            granted >>= 3
        }
        return requested & ~granted & 7 == 0 || who.credentials.capable(IPCCaller.CAP_IPC_OWNER)
    }

    /// IPC_SET and IPC_RMID: the owner or creator, or CAP_SYS_ADMIN (ipcctl_obtain_check).
    func ownedBy(_ who: IPCCaller) -> Bool {
        who.uid == cuid || who.uid == uid || who.credentials.capable(Credentials.CAP_SYS_ADMIN)
    }

    /// IPC_SET's part of struct ipc64_perm: uid, gid and the 9 rights bits.
    mutating func set(from b: [UInt8]) {
        uid = Bytes.u32(b, at: 4)
        gid = Bytes.u32(b, at: 8)
        mode = (mode & ~0o777) | (Bytes.u32(b, at: 20) & 0o777)
    }
}

/// Who makes an IPC call: the effective uid and gid new objects get, and
/// the credentials the permission checks look at.
struct IPCCaller {
    static let CAP_IPC_OWNER = 15
    let credentials: Credentials
    var uid: UInt32 { credentials.euid }
    var gid: UInt32 { credentials.egid }
    init(_ credentials: Credentials) { self.credentials = credentials }
}

/// An object of one of the three kinds, with its permission block.
protocol IPCObject: AnyObject {
    var permission: IPCPermission { get set }
}

/// Ids as ipc_idr_alloc builds them: the lowest free index plus a sequence
/// number that grows with each object made, `seq << 15 | index`.
struct IPCTable<Object: IPCObject> {
    private(set) var byIndex: [Int: Object] = [:]
    private var seq: Int32 = 0
    static var maximum: Int { 32768 }

    func object(_ id: Int32) -> Object? {
        guard id >= 0, let o = byIndex[Int(id & 0x7fff)], Int32(o.permission.seq) == id >> 15 else { return nil }
        return o
    }

    func object(key: Int32) -> Object? {
        byIndex.values.first { $0.permission.key == key && key != 0 }
    }

    func id(of o: Object) -> Int32? {
        byIndex.first { $0.value === o }.map { Int32($0.key) | Int32(o.permission.seq) << 15 }
    }

    /// The id of a new object, which gets its sequence number.
    mutating func insert(_ o: Object, limit: Int) -> Int32? {
        guard let index = (0..<min(limit, Self.maximum)).first(where: { byIndex[$0] == nil }) else { return nil }
        o.permission.seq = UInt16(truncatingIfNeeded: seq)
        seq = seq >= 0xffff ? 0 : seq + 1
        byIndex[index] = o
        return Int32(index) | Int32(o.permission.seq) << 15
    }

    mutating func remove(_ o: Object) {
        if let entry = byIndex.first(where: { $0.value === o }) { byIndex[entry.key] = nil }
    }

    /// The highest index in use, what the *_INFO commands return (0 when none).
    var highestIndex: Int { byIndex.keys.max() ?? 0 }

    /// The object at an index (the *_STAT commands take an index, not an id).
    func object(index: Int32) -> Object? { index >= 0 ? byIndex[Int(index)] : nil }
}

/// shmget, semget and msgget on a key (ipcget): a new object for
/// IPC_PRIVATE or a missing key with IPC_CREAT; otherwise the existing one,
/// after IPC_EXCL, the kind's own check (`moreChecks`) and the rights.
enum IPCGet {
    static func get<Object: IPCObject>(_ table: inout IPCTable<Object>, key: Int32, flags: Int32,
                                       who: IPCCaller, limit: Int,
                                       moreChecks: (Object) throws(Errno) -> Void,
                                       make: () throws(Errno) -> Object) throws(Errno) -> Int32 {
        if key != 0, let existing = table.object(key: key) {
            if flags & IPCPermission.IPC_CREAT != 0 && flags & IPCPermission.IPC_EXCL != 0 { throw .exist }
            try moreChecks(existing)
            guard existing.permission.allows(flags, who) else { throw .acces }
            return table.id(of: existing) ?? -1
        }
        if key != 0 && flags & IPCPermission.IPC_CREAT == 0 { throw .noent }
        let o = try make()
        o.permission = IPCPermission(key: key, uid: who.uid, gid: who.gid, cuid: who.uid, cgid: who.gid,
                                     mode: UInt32(truncatingIfNeeded: flags) & 0o777, seq: 0)
        guard let id = table.insert(o, limit: limit) else { throw Errno(ENOSPC) }
        return id
    }
}

/// Packing the IPC structs needs beyond `Bytes`.
enum IPCBytes {
    static func u16(_ v: UInt16) -> [UInt8] { [UInt8(v & 0xff), UInt8(v >> 8)] }
    static func i64(_ v: Int64) -> [UInt8] { Bytes.u64(UInt64(bitPattern: v)) }
    static func i64(_ b: [UInt8], at i: Int) -> Int64 { Int64(bitPattern: Bytes.u64(b, at: i)) }
}
