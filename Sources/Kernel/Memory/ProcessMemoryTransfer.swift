import KVMUser

/// process_vm_readv and process_vm_writev between processes of the
/// recording, as mm/process_vm_access.c has them. Both memories are guest
/// state, so the copy is emulated the same in record and replay.
///
/// - flags other than 0, or more than UIO_MAXIOV vectors: EINVAL; a vector
///   array that cannot be read, or a local range outside user space: EFAULT.
/// - Nothing to copy returns 0 before the process is looked up.
/// - No such process (or one that has ended): ESRCH; another user's, or a
///   non-dumpable one, without root (CAP_SYS_PTRACE): EPERM.
/// - The copy goes in order and stops at the first page either side
///   cannot take (a remote page the target cannot read, or write: no
///   FOLL_FORCE); it returns the bytes copied, EFAULT when there were none.
///
/// A process outside the recording is refused with a report (EPERM):
/// replay could not read it.
enum ProcessMemoryTransfer {
    static let maxVectors: UInt64 = 1024

    static func register(_ t: inout SyscallTable) {
        t.add(SYS.process_vm_readv, .emulated, note: "between processes of the recording") { c in try transfer(c, write: false) }
        t.add(SYS.process_vm_writev, .emulated, note: "between processes of the recording") { c in try transfer(c, write: true) }
    }

    /// An iovec array as (base, length) pairs; EINVAL when the total
    /// overflows ssize_t.
    static func vectors(_ c: SyscallCall, _ address: UInt64, _ count: UInt64) throws(Errno) -> [(UInt64, UInt64)] {
        guard count > 0 else { return [] }
        let raw = try c.read(address, count: Int(count) * 16)
        var out: [(UInt64, UInt64)] = []
        var total: UInt64 = 0
        for k in 0..<Int(count) {
            let base = Bytes.u64(raw, at: k * 16), length = Bytes.u64(raw, at: k * 16 + 8)
            let (sum, o) = total.addingReportingOverflow(length)
            guard !o, sum <= UInt64(Int64.max) else { throw .inval }
            total = sum
            out.append((base, length))
        }
        return out
    }

    static func transfer(_ c: SyscallCall, write: Bool) throws -> Int64 {
        let pid = c.int(0)
        guard c.arg(5) == 0, c.arg(2) <= maxVectors, c.arg(4) <= maxVectors else { throw Errno.inval }
        let local = try vectors(c, c.arg(1), c.arg(2))
        // import_iovec: every local range lies in user space.
        for (base, length) in local where length > 0 {
            guard base < GuestMemory.userLimit, length <= GuestMemory.userLimit - base else { throw Errno.fault }
        }
        let remote = try vectors(c, c.arg(3), c.arg(4))
        guard local.contains(where: { $0.1 > 0 }), remote.contains(where: { $0.1 > 0 }) else { return 0 }
        let caller = c.process
        guard pid > 0 else { throw Errno.srch }
        guard let target = try ProcessGroups.target(c, pid) else {
            caller.report("process_vm_\(write ? "writev" : "readv") of a process outside the recording is not supported; returning EPERM",
                          key: SYS.process_vm_readv << 8 | (write ? 1 : 0), rip: c.rip)
            throw Errno.perm
        }
        guard target.zombieStatus == nil else { throw Errno.srch }
        guard CredentialsSyscalls.mayAccess(caller, target) else { throw Errno.perm }
        // Shared pages: the memory on the vCPU has the freshest copy.
        if target.mm !== caller.mm && !(caller.mm.sharedViews.isEmpty && target.mm.sharedViews.isEmpty) {
            SharedMemory.push(caller.mm)
            SharedMemory.pull(target.mm)
        }
        let remoteMemory = target.memory
        var copied: UInt64 = 0
        var li = 0, lo: UInt64 = 0
        copy: for (base, length) in remote {
            var ro: UInt64 = 0
            while ro < length {
                while li < local.count && lo >= local[li].1 { li += 1; lo = 0 }
                guard li < local.count else { break copy }
                let remoteAt = base &+ ro, localAt = local[li].0 + lo
                // One page of the remote side at a time, as get_user_pages does.
                let inPage = 4096 - (remoteAt & 4095)
                let n = Int(min(inPage, length - ro, local[li].1 - lo))
                if write {
                    guard let bytes = try? c.read(localAt, count: n) else { break copy }
                    guard (try? remoteMemory.write(remoteAt, bytes, access: .user)) != nil else { break copy }
                } else {
                    guard let bytes = try? remoteMemory.read(remoteAt, count: n, access: .user) else { break copy }
                    guard (try? c.write(localAt, bytes)) != nil else { break copy }
                }
                copied += UInt64(n)
                ro += UInt64(n)
                lo += UInt64(n)
            }
        }
        if write && target.mm !== caller.mm && !target.mm.sharedViews.isEmpty {
            SharedMemory.push(target.mm)
            SharedMemory.pull(caller.mm)
        }
        guard copied > 0 else { throw Errno.fault }
        return Int64(copied)
    }
}
