import Glibc

/// gdb's `vFile:` packets (read-only): gdb reads the program, ld.so and
/// the libraries through the stub ("target:" sysroot). The executable and
/// the interpreter come from the trace, as they were recorded; the guest's
/// /proc files (`info proc`) are generated from the replayed process; other
/// /proc paths do not exist; any other path is the host's file. Nothing can
/// be written or removed.
final class HostIO {
    /// Recorded files by the paths gdb may ask for.
    private let stored: [String: [UInt8]]
    /// The guest's /proc: a file's contents, a link's target.
    var procFile: (String) -> [UInt8]? = { _ in nil }
    var procLink: (String) -> String? = { _ in nil }
    private enum Open { case bytes([UInt8]), host(Int32) }
    private var open: [Int: Open] = [:]
    private var nextFD = 1

    // gdb's File-I/O errno values.
    static let ENOENT = 2, EBADF = 9, EACCES = 13, EINVAL = 22, ENOSYS = 88

    init(stored: [String: [UInt8]]) { self.stored = stored }

    deinit { closeAll() }

    func closeAll() {
        for case .host(let fd) in open.values { Glibc.close(fd) }
        open.removeAll()
    }

    /// The reply to a `vFile:` packet; nil when it is not one this stub knows.
    func handle(_ p: String) -> [UInt8]? {
        guard p.hasPrefix("vFile:") else { return nil }
        let body = p.dropFirst(6)
        let name = body.prefix { $0 != ":" }
        let args = body.dropFirst(name.count + 1).split(separator: ",", omittingEmptySubsequences: false)
        switch name {
        case "setfs":
            return text("F0")
        case "open":
            guard args.count >= 2, let pathBytes = Packet.bytes(fromHex: args[0]), let flags = Packet.number(args[1]) else {
                return error(HostIO.EINVAL)
            }
            guard flags & 3 == 0 else { return error(HostIO.EACCES) }   // read-only
            let path = String(decoding: pathBytes, as: UTF8.self)
            let entry: Open
            if let bytes = stored[path] {
                entry = .bytes(bytes)
            } else if let bytes = procFile(path) {
                entry = .bytes(bytes)
            } else if path.hasPrefix("/proc/") {
                return error(HostIO.ENOENT)
            } else {
                let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
                guard fd >= 0 else { return error(HostIO.fileioErrno(errno)) }
                entry = .host(fd)
            }
            let fd = nextFD
            nextFD += 1
            open[fd] = entry
            return text("F" + String(fd, radix: 16))
        case "close":
            guard args.count == 1, let fd = Packet.number(args[0]).map({ Int($0) }), let entry = open.removeValue(forKey: fd) else {
                return error(HostIO.EBADF)
            }
            if case .host(let h) = entry { Glibc.close(h) }
            return text("F0")
        case "pread":
            guard args.count == 3, let fd = Packet.number(args[0]).map({ Int($0) }), let count = Packet.number(args[1]),
                  let offset = Packet.number(args[2]) else { return error(HostIO.EINVAL) }
            guard let entry = open[fd] else { return error(HostIO.EBADF) }
            let n = Int(min(count, 1 << 16))
            var data: [UInt8]
            switch entry {
            case .bytes(let b):
                let start = Int(min(offset, UInt64(b.count)))
                data = Array(b[start..<min(b.count, start + n)])
            case .host(let h):
                data = [UInt8](repeating: 0, count: n)
                let got = data.withUnsafeMutableBytes { Glibc.pread(h, $0.baseAddress, n, off_t(offset)) }
                guard got >= 0 else { return error(HostIO.fileioErrno(errno)) }
                data.removeLast(n - got)
            }
            return Array("F\(String(data.count, radix: 16));".utf8) + Packet.escape(data)
        case "fstat":
            guard args.count == 1, let fd = Packet.number(args[0]).map({ Int($0) }), let entry = open[fd] else {
                return error(HostIO.EBADF)
            }
            var size: UInt64 = 0
            var mode: UInt32 = 0o100644
            if case .bytes(let b) = entry { size = UInt64(b.count) }
            if case .host(let h) = entry {
                var st = stat()
                guard fstat(h, &st) == 0 else { return error(HostIO.fileioErrno(errno)) }
                size = UInt64(st.st_size)
                mode = st.st_mode
            }
            // gdb's struct stat: big-endian, 64 bytes.
            var s: [UInt8] = []
            func be(_ v: UInt64, _ n: Int) { for i in (0..<n).reversed() { s.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) } }
            be(0, 4); be(0, 4); be(UInt64(mode), 4); be(1, 4); be(0, 4); be(0, 4); be(0, 4)
            be(size, 8); be(4096, 8); be((size + 511) / 512, 8)
            be(0, 4); be(0, 4); be(0, 4)
            return Array("F\(String(s.count, radix: 16));".utf8) + Packet.escape(s)
        case "readlink":
            guard args.count == 1, let pathBytes = Packet.bytes(fromHex: args[0]) else { return error(HostIO.EINVAL) }
            let path = String(decoding: pathBytes, as: UTF8.self)
            if let target = procLink(path) {
                return Array("F\(String(target.utf8.count, radix: 16));".utf8) + Packet.escape(Array(target.utf8))
            }
            if path.hasPrefix("/proc/") { return error(HostIO.ENOENT) }
            var buf = [CChar](repeating: 0, count: 4096)
            let n = Glibc.readlink(path, &buf, buf.count)
            guard n >= 0 else { return error(HostIO.fileioErrno(errno)) }
            let target = buf[0..<n].map { UInt8(bitPattern: $0) }
            return Array("F\(String(n, radix: 16));".utf8) + Packet.escape(target)
        case "pwrite", "unlink":
            return error(HostIO.EACCES)
        default:
            return nil
        }
    }

    private func text(_ s: String) -> [UInt8] { Array(s.utf8) }
    private func error(_ e: Int) -> [UInt8] { text("F-1," + String(e, radix: 16)) }

    static func fileioErrno(_ e: Int32) -> Int {
        switch e {
        case Glibc.EPERM: return 1
        case Glibc.ENOENT: return 2
        case Glibc.EBADF: return 9
        case Glibc.EACCES: return 13
        case Glibc.ENOTDIR: return 20
        case Glibc.EISDIR: return 21
        case Glibc.EINVAL: return 22
        case Glibc.ENAMETOOLONG: return 91
        default: return 9999
        }
    }
}
