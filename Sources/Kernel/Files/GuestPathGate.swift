import Glibc

/// The check every passthrough path argument passes before the host sees
/// it (recording only): `GuestPath` decides where the path leads, and a
/// path into the guest's /proc is replaced by the host node with the same
/// metadata (`ProcFS.hostEquivalent`), so stat and access describe the
/// guest's node while nothing of detrec's is opened or changed.
enum GuestPathGate {
    static func apply(_ number: UInt64, spec: [PassArg], carried: inout [Carried], args: [UInt64],
                      process: Process, rip: UInt64) throws(Errno) {
        for (i, kind) in spec.enumerated() {
            if case .fd = kind, case .file(let f?) = carried[i], number == SYS.fchdir, f.procLocation != nil {
                process.report("fchdir into the guest's /proc is not supported; returning ENOSYS", key: 0x3_0000_0001, rip: rip)
                throw .nosys
            }
            switch kind {
            case .path, .pathOrNull: break
            default: continue
            }
            guard case .buffer(let bytes, let guest, let copyOut) = carried[i] else { continue }
            let rule = PathRule.of(number, argument: i, args: args)
            guard rule.isPath else { continue }
            var dirIndex: Int?
            if i > 0, case .dirfd = spec[i - 1] { dirIndex = i - 1 }
            var dir: OpenFile?
            if let d = dirIndex, case .file(let f) = carried[d] { dir = f }
            let path = Array(bytes.prefix { $0 != 0 })
            let (target, hostPath, hostDir) = GuestPath.hostArguments(path, from: dir, process: process, follow: rule.follow)
            if hostDir !== dir || hostPath != path {
                // Relative to a directory of the guest's /proc, or through
                // one of its links (/proc/<pid>/cwd of a process that is not
                // detrec's own pid): the host gets the walk's absolute path.
                carried[i] = .buffer(hostPath + [0], guest: guest, copyOut: copyOut)
                if let d = dirIndex { carried[d] = .file(nil) }
            }
            switch target {
            case .host:
                continue
            case .hostProc:
                if rule.modifying { throw .acces }
            case .denied(let e):
                throw e
            case .proc(let location):
                if number == SYS.chdir {
                    process.report("chdir into the guest's /proc is not supported; returning ENOSYS", key: 0x3_0000_0001, rip: rip)
                    throw .nosys
                }
                let isOpenFile = location.rest.count == 2 && location.rest[0] == "fd"
                if rule.modifying && !isOpenFile { throw .perm }
                guard let host = ProcFS.hostEquivalent(location, family: process.family) else { throw .noent }
                carried[i] = .buffer(Array(host.utf8) + [0], guest: guest, copyOut: copyOut)
                if let d = dirIndex { carried[d] = .file(nil) }
            }
        }
    }
}
