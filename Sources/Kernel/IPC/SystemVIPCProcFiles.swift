import Glibc

/// /proc/sysvipc/msg, sem and shm for the guest: the recording's emulated
/// objects (`IPCNamespace`), not the host's, laid out as ipc/msg.c, sem.c
/// and shm.c's sysvipc_*_proc_show print them, one line per object in the
/// order of their index (sysvipc_find_ipc). Generated while recording;
/// replay reads what the guest read from the trace.
enum SystemVIPCProcFiles {
    static let names: Set<String> = ["msg", "sem", "shm"]

    /// `printf`'s `%<width>d` / `%<width>u`: right-aligned in `width` columns.
    static func pad(_ v: some BinaryInteger, _ width: Int) -> String {
        let s = String(v)
        return String(repeating: " ", count: max(0, width - s.count)) + s
    }

    /// The `%10d %10d  %4o` every line starts with: key, id and mode.
    static func head(_ perm: IPCPermission, id: Int32) -> String {
        pad(perm.key, 10) + " " + pad(id, 10) + "  " + {
            let s = String(perm.mode, radix: 8)
            return String(repeating: " ", count: max(0, 4 - s.count)) + s
        }()
    }

    static func owners(_ perm: IPCPermission) -> String {
        [perm.uid, perm.gid, perm.cuid, perm.cgid].map { pad($0, 5) }.joined(separator: " ")
    }

    /// The file's text; nil for a name that is not one of the three.
    static func contents(_ name: String, family: ProcessFamily) -> [UInt8]? {
        let ns = family.ipcState
        var out: String
        switch name {
        case "msg":
            out = "       key      msqid perms      cbytes       qnum lspid lrpid   uid   gid  cuid  cgid      stime      rtime      ctime\n"
            for (index, q) in (ns?.messageQueues.byIndex ?? [:]).sorted(by: { $0.key < $1.key }) {
                let id = Int32(index) | Int32(q.permission.seq) << 15
                out += head(q.permission, id: id) + "  " + pad(q.bytes, 10) + " " + pad(q.messages.count, 10) + " "
                out += pad(q.lastSender, 5) + " " + pad(q.lastReceiver, 5) + " " + owners(q.permission) + " "
                out += [q.sendTime, q.receiveTime, q.changeTime].map { pad($0, 10) }.joined(separator: " ") + "\n"
            }
        case "sem":
            out = "       key      semid perms      nsems   uid   gid  cuid  cgid      otime      ctime\n"
            for (index, s) in (ns?.semaphoreSets.byIndex ?? [:]).sorted(by: { $0.key < $1.key }) {
                let id = Int32(index) | Int32(s.permission.seq) << 15
                out += head(s.permission, id: id) + " " + pad(s.values.count, 10) + " " + owners(s.permission) + " "
                out += pad(s.operationTime, 10) + " " + pad(s.changeTime, 10) + "\n"
            }
        case "shm":
            out = "       key      shmid perms                  size  cpid  lpid nattch   uid   gid  cuid  cgid      atime      dtime      ctime                   rss                  swap\n"
            for (index, seg) in (ns?.segments.byIndex ?? [:]).sorted(by: { $0.key < $1.key }) {
                let id = Int32(index) | Int32(seg.permission.seq) << 15
                // rss: the pages the segment holds (touched ones); nothing is swapped.
                let rss = UInt64(seg.object.pages.count) * 4096
                out += head(seg.permission, id: id) + " " + pad(seg.size, 21) + " " + pad(seg.creator, 5) + " "
                out += pad(seg.lastPID, 5) + "  " + pad(seg.attachments(family), 5) + " " + owners(seg.permission) + " "
                out += [seg.attachTime, seg.detachTime, seg.changeTime].map { pad($0, 10) }.joined(separator: " ")
                out += " " + pad(rss, 21) + " " + pad(0, 21) + "\n"
            }
        default:
            return nil
        }
        return Array(out.utf8)
    }
}

extension SystemVIPCProcFiles {
    /// The file a host descriptor the guest opened under a procfs mount is,
    /// when it is one of /proc/sysvipc/{msg,sem,shm}.
    static func name(ofHost fd: Int32) -> String? {
        guard let path = GuestPath.hostReadlink("/proc/self/fd/\(fd)") else { return nil }
        for mount in GuestPath.procMountPoints {
            let prefix = (mount == "/" ? "" : mount) + "/sysvipc/"
            if path.hasPrefix(prefix), names.contains(String(path.dropFirst(prefix.count))) {
                return String(path.dropFirst(prefix.count))
            }
        }
        return nil
    }

    /// The guest's view of a host /proc/sysvipc file it opened: a memfd
    /// with the recording's objects in place of `fd` (closed), or nil when
    /// `fd` is no such file and stays as it is.
    static func replacing(_ fd: Int32, family: ProcessFamily) -> Int32? {
        guard let name = name(ofHost: fd), let bytes = contents(name, family: family),
              let made = ProcFS.memfd(bytes, access: O_RDONLY) else { return nil }
        close(fd)
        return made
    }
}
