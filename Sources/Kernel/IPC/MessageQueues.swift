import Glibc

/// A System V message queue (ipc/msg.c).
final class MessageQueue: IPCObject {
    var permission = IPCPermission(key: 0, uid: 0, gid: 0, cuid: 0, cgid: 0, mode: 0, seq: 0)
    var messages: [(type: Int64, text: [UInt8])] = []
    var capacity = MessageQueues.maxQueueBytes
    var bytes: Int { messages.reduce(0) { $0 + $1.text.count } }
    var lastSender: Int32 = 0, lastReceiver: Int32 = 0
    var sendTime: Int64 = 0, receiveTime: Int64 = 0, changeTime: Int64
    /// Set by IPC_RMID: a thread parked on it gets EIDRM.
    var removed = false
    /// Threads parked in msgsnd or msgrcv on it.
    var waiters: Set<Int32> = []

    init(now: Int64) { changeTime = now }

    /// msg_fits_inqueue: the bytes and the message count both stay within msg_qbytes.
    func fits(_ size: Int) -> Bool { bytes + size <= capacity && messages.count + 1 <= capacity }

    /// find_msg: the index of the message msgrcv takes for `type` and its flags.
    func find(_ type: Int64, flags: Int32) -> Int? {
        if type == 0 { return messages.isEmpty ? nil : 0 }
        if type > 0 {
            let except = flags & MessageQueues.MSG_EXCEPT != 0
            return messages.firstIndex { except ? $0.type != type : $0.type == type }
        }
        // The lowest type at most |type|, the first of them.
        let bound = type == Int64.min ? Int64.max : -type
        var best: Int?
        for (i, m) in messages.enumerated() where m.type <= bound {
            if best == nil || m.type < messages[best!].type { best = i }
        }
        return best
    }
}

/// msgget, msgsnd, msgrcv and msgctl, emulated in `IPCNamespace`.
enum MessageQueues {
    static let MSG_NOERROR: Int32 = 0o10000, MSG_EXCEPT: Int32 = 0o20000, MSG_COPY: Int32 = 0o40000
    static let MSG_STAT: Int32 = 11, MSG_INFO: Int32 = 12, MSG_STAT_ANY: Int32 = 13
    /// Linux's defaults: MSGMAX, MSGMNB, MSGMNI.
    static let maxMessage = 8192, maxQueueBytes = 16384, maxQueues = 32000

    static func register(_ t: inout SyscallTable) {
        t.add(SYS.msgget, .emulated, note: "emulated inside the recording (processes outside it do not see the queues)", msgget)
        t.addOutcome(SYS.msgsnd, .emulated, note: "blocking parks the thread", msgsnd)
        t.addOutcome(SYS.msgrcv, .emulated, note: "types, MSG_EXCEPT, MSG_NOERROR, MSG_COPY; blocking parks the thread", msgrcv)
        t.add(SYS.msgctl, .emulated, note: "IPC_STAT/SET/RMID/INFO, MSG_INFO, MSG_STAT(_ANY)", msgctl)
    }

    static func msgget(_ c: SyscallCall) throws -> Int64 {
        let ns = c.process.family.ipc
        let id = try IPCGet.get(&ns.messageQueues, key: c.int(0), flags: c.int(1), who: ns.credentials(c), limit: maxQueues,
                                moreChecks: { (_: MessageQueue) throws(Errno) in },
                                make: { () throws(Errno) -> MessageQueue in
            return MessageQueue(now: IPCNamespace.now(c))
        })
        return Int64(id)
    }

    /// The queue this thread parked on before, if any: that attempt is over
    /// (EIDRM when the queue went meanwhile).
    static func endWait(_ ns: IPCNamespace, _ tid: Int32) throws(Errno) {
        guard let previous = ns.messageQueues.byIndex.values.first(where: { $0.waiters.contains(tid) })
                ?? ns.removedQueues.first(where: { $0.waiters.contains(tid) }) else { return }
        previous.waiters.remove(tid)
        ns.removedQueues.removeAll { $0.waiters.isEmpty }
        if previous.removed { throw Errno(EIDRM) }
    }

    static func park(_ c: SyscallCall, _ q: MessageQueue, until ready: @escaping (MessageQueue) -> Bool) -> SyscallOutcome {
        q.waiters.insert(c.process.current.tid)
        return .park(.guest { [weak q] in
            guard let q else { return true }
            return q.removed || ready(q)
        })
    }

    static func msgsnd(_ c: SyscallCall) throws -> SyscallOutcome {
        let p = c.process, ns = p.family.ipc
        try endWait(ns, p.current.tid)
        if c.interrupted { return .result(Errno.intr.result) }
        let id = c.int(0), buffer = c.arg(1), size = c.long(2), flags = c.int(3)
        let type: Int64 = try c.readValue(buffer)
        guard size >= 0, size <= Int64(maxMessage), id >= 0 else { throw Errno.inval }
        guard type >= 1 else { throw Errno.inval }
        let text = try c.read(buffer &+ 8, count: Int(size))
        guard let q = ns.messageQueues.object(id) else { throw Errno.inval }
        guard q.permission.allows(0o222, ns.credentials(c)) else { throw Errno.acces }
        guard q.fits(text.count) else {
            if flags & IPCPermission.IPC_NOWAIT != 0 { throw Errno.again }
            let n = text.count
            return park(c, q) { $0.fits(n) }
        }
        let now = IPCNamespace.now(c)
        q.messages.append((type, text))
        q.lastSender = p.pid
        q.sendTime = now
        return .result(0)
    }

    static func msgrcv(_ c: SyscallCall) throws -> SyscallOutcome {
        let p = c.process, ns = p.family.ipc
        try endWait(ns, p.current.tid)
        if c.interrupted { return .result(Errno.intr.result) }
        let id = c.int(0), buffer = c.arg(1), size = c.long(2), type = c.long(3), flags = c.int(4)
        guard id >= 0, size >= 0 else { throw Errno.inval }
        if flags & MSG_COPY != 0 {
            guard flags & IPCPermission.IPC_NOWAIT != 0, flags & MSG_EXCEPT == 0 else { throw Errno.inval }
        }
        guard let q = ns.messageQueues.object(id) else { throw Errno.inval }
        guard q.permission.allows(0o444, ns.credentials(c)) else { throw Errno.acces }
        let index: Int?
        if flags & MSG_COPY != 0 {
            // The type is the position in the queue, and the message stays.
            index = type >= 0 && type < Int64(q.messages.count) ? Int(type) : nil
        } else {
            index = q.find(type, flags: flags)
        }
        guard let index else {
            if flags & IPCPermission.IPC_NOWAIT != 0 { throw Errno(ENOMSG) }
            return park(c, q) { $0.find(type, flags: flags) != nil }
        }
        let message = q.messages[index]
        if Int64(message.text.count) > size && flags & MSG_NOERROR == 0 { throw Errno(E2BIG) }
        let now = IPCNamespace.now(c)
        if flags & MSG_COPY == 0 {
            q.messages.remove(at: index)
            q.lastReceiver = p.pid
            q.receiveTime = now
        }
        // Taken from the queue before the copy, as Linux does: a bad buffer loses it.
        let n = min(message.text.count, Int(size))
        try c.write(buffer, Bytes.u64(UInt64(bitPattern: message.type)) + message.text.prefix(n))
        return .result(Int64(n))
    }

    static func msgctl(_ c: SyscallCall) throws -> Int64 {
        let p = c.process, ns = p.family.ipc
        let id = c.int(0), command = c.int(1), buffer = c.arg(2)
        guard id >= 0, command >= 0 else { throw Errno.inval }
        let who = ns.credentials(c)
        switch command {
        case IPCPermission.IPC_INFO, MSG_INFO:
            let queues = Array(ns.messageQueues.byIndex.values)
            // struct msginfo: msgpool, msgmap, msgmax, msgmnb, msgmni, msgssz, msgtql (ints), msgseg (ushort).
            var info = [maxQueues * maxQueueBytes / 1024, maxQueueBytes, maxMessage, maxQueueBytes, maxQueues, 16, maxQueueBytes]
            if command == MSG_INFO {
                info[0] = queues.count
                info[1] = queues.reduce(0) { $0 + $1.messages.count }
                info[6] = queues.reduce(0) { $0 + $1.bytes }
            }
            try c.write(buffer, info.flatMap { Bytes.i32(Int32(truncatingIfNeeded: $0)) } + IPCBytes.u16(0xffff) + [0, 0])
            return Int64(ns.messageQueues.highestIndex)
        case IPCPermission.IPC_STAT, MSG_STAT, MSG_STAT_ANY:
            guard let q = command == IPCPermission.IPC_STAT ? ns.messageQueues.object(id) : ns.messageQueues.object(index: id) else { throw Errno.inval }
            if command != MSG_STAT_ANY, !q.permission.allows(0o444, who) { throw Errno.acces }
            var b = q.permission.bytes + [q.sendTime, q.receiveTime, q.changeTime].flatMap(IPCBytes.i64)
            b += [UInt64(q.bytes), UInt64(q.messages.count), UInt64(q.capacity)].flatMap(Bytes.u64)
            b += Bytes.i32(q.lastSender) + Bytes.i32(q.lastReceiver) + Bytes.u64(0) + Bytes.u64(0)
            return try IPCNamespace.stat(c, buffer, b, returning: command == IPCPermission.IPC_STAT ? 0 : Int64(ns.messageQueues.id(of: q) ?? 0))
        case IPCPermission.IPC_SET:
            let given = try c.read(buffer, count: 96)
            guard let q = ns.messageQueues.object(id) else { throw Errno.inval }
            guard q.permission.ownedBy(who) else { throw Errno.perm }
            let capacity = Bytes.u64(given, at: 88)
            // Raising msg_qbytes above MSGMNB takes CAP_SYS_RESOURCE in the
            // caller's (emulated) effective set.
            if capacity > UInt64(maxQueueBytes), !ProcessSyscalls.hasCapability(c, Credentials.CAP_SYS_RESOURCE) {
                throw Errno.perm
            }
            let now = IPCNamespace.now(c)
            q.capacity = Int(min(capacity, UInt64(Int32.max)))
            q.permission.set(from: given)
            q.changeTime = now
            return 0
        case IPCPermission.IPC_RMID:
            guard let q = ns.messageQueues.object(id) else { throw Errno.inval }
            guard q.permission.ownedBy(who) else { throw Errno.perm }
            q.removed = true
            ns.messageQueues.remove(q)
            if !q.waiters.isEmpty { ns.removedQueues.append(q) }
            return 0
        default:
            throw Errno.inval
        }
    }
}
