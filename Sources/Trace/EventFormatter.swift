/// Renders events for `detrec dump`: one line of text, or one compact JSON object, per event.
/// Syscall names come from the caller because this module knows nothing about Linux syscalls.
public struct EventFormatter {
    /// Bytes of memory-write data shown in JSON output; the rest is summarised by "length".
    public static let jsonDataPreview = 64

    private let syscallName: (UInt64) -> String
    private let errnoName: (Int32) -> String?

    /// `errnoName` maps a positive errno to its symbolic name (nil if unknown); the default
    /// knows the Linux x86-64 names.
    public init(syscallName: @escaping (UInt64) -> String,
                errnoName: @escaping (Int32) -> String? = EventFormatter.linuxErrnoName) {
        self.syscallName = syscallName
        self.errnoName = errnoName
    }

    // MARK: Text

    /// e.g. `#12 tid=1001 syscall read(0) args=0x3 0x7ffd0000 0x200 0x0 0x0 0x0 result=-2 (-ENOENT) rip=0x401234 ticks=0 writes=0`
    public func text(_ event: Event, index: Int) -> String {
        let head = "#\(index) tid=\(event.tid) \(event.kindName)"
        switch event {
        case let .processStart(_, atRandom):
            return "\(head) atRandom=\(hexBytes(atRandom[...]))"
        case let .syscall(r):
            let args = r.args.map(hex).joined(separator: " ")
            return "\(head) \(syscallName(r.number))(\(r.number)) args=\(args) result=\(resultText(r.result))"
                + " rip=\(hex(r.rip)) ticks=\(r.ticks) writes=\(writesSummary(r.writes))"
        case let .exit(_, status):
            return "\(head) status=\(status)"
        case let .fatalSignal(_, signal, code, rip, address):
            return "\(head) signal=\(signal) code=\(code) rip=\(hex(rip)) address=\(hex(address))"
        case let .blocked(_, number, rip):
            return "\(head) in \(syscallName(number))(\(number)) rip=\(hex(rip))"
        case let .signal(_, signal, code):
            return "\(head) signal=\(signal) code=\(code)"
        case let .dataCheck(_, length, crc):
            return "\(head) length=\(length) crc32c=\(hex(UInt64(crc)))"
        case let .preempt(_, rip, hits, registers):
            return "\(head) rip=\(hex(rip)) hits=\(hits) registers=\(hex(registers))"
        }
    }

    private func resultText(_ result: Int64) -> String {
        if result >= -4095 && result < 0 {
            let e = Int32(-result)
            return "\(result) (-\(errnoName(e) ?? "errno \(e)"))"
        }
        return result >= 0 ? "\(result) (\(hex(UInt64(result))))" : "\(result)"
    }

    private func writesSummary(_ writes: [MemoryWrite]) -> String {
        guard let first = writes.first else { return "0" }
        let total = writes.reduce(UInt64(0)) { $0 &+ $1.length }
        return "\(writes.count) (\(total) bytes, first at \(hex(first.address)))"
    }

    // MARK: JSON

    /// One compact JSON object with a "kind" field. Addresses are hex strings (they exceed the
    /// 2^53 integers JSON consumers handle exactly); memory data is hex, at most 64 bytes of it.
    public func json(_ event: Event, index: Int) -> String {
        var f: [String] = ["\"index\":\(index)", "\"kind\":\"\(event.kindName)\"", "\"tid\":\(event.tid)"]
        switch event {
        case let .processStart(_, atRandom):
            f.append("\"atRandom\":\"\(hexBytes(atRandom[...]))\"")
        case let .syscall(r):
            f.append("\"number\":\(r.number)")
            f.append("\"name\":\(jsonString(syscallName(r.number)))")
            f.append("\"args\":[\(r.args.map { "\"\(hex($0))\"" }.joined(separator: ","))]")
            f.append("\"result\":\(r.result)")
            if r.result >= -4095 && r.result < 0 {
                f.append("\"errno\":\(-r.result)")
            }
            f.append("\"rip\":\"\(hex(r.rip))\"")
            f.append("\"ticks\":\(r.ticks)")
            f.append("\"writes\":[\(r.writes.map(writeJSON).joined(separator: ","))]")
        case let .exit(_, status):
            f.append("\"status\":\(status)")
        case let .fatalSignal(_, signal, code, rip, address):
            f.append("\"signal\":\(signal)")
            f.append("\"code\":\(code)")
            f.append("\"rip\":\"\(hex(rip))\"")
            f.append("\"address\":\"\(hex(address))\"")
        case let .blocked(_, number, rip):
            f.append("\"number\":\(number)")
            f.append("\"name\":\"\(syscallName(number))\"")
            f.append("\"rip\":\"\(hex(rip))\"")
        case let .signal(_, signal, code):
            f.append("\"signal\":\(signal)")
            f.append("\"code\":\(code)")
        case let .dataCheck(_, length, crc):
            f.append("\"length\":\(length)")
            f.append("\"crc32c\":\"\(hex(UInt64(crc)))\"")
        case let .preempt(_, rip, hits, registers):
            f.append("\"rip\":\"\(hex(rip))\"")
            f.append("\"hits\":\(hits)")
            f.append("\"registers\":\"\(hex(registers))\"")
        }
        return "{" + f.joined(separator: ",") + "}"
    }

    private func writeJSON(_ w: MemoryWrite) -> String {
        switch w {
        case let .bytes(address, data):
            let shown = data.prefix(Self.jsonDataPreview)
            return "{\"kind\":\"bytes\",\"address\":\"\(hex(address))\",\"length\":\(data.count),\"data\":\"\(hexBytes(shown))\"}"
        case let .stored(address, length, sha256, offset):
            return "{\"kind\":\"stored\",\"address\":\"\(hex(address))\",\"length\":\(length),"
                + "\"sha256\":\(jsonString(sha256)),\"offset\":\(offset)}"
        case let .storedRange(address, length, sha256, offset):
            return "{\"kind\":\"storedRange\",\"address\":\"\(hex(address))\",\"length\":\(length),"
                + "\"sha256\":\(jsonString(sha256)),\"offset\":\(offset)}"
        }
    }

    /// The header as one compact JSON object (sorted keys), or pretty-printed.
    public func headerJSON(_ h: TraceHeader, pretty: Bool = false) -> String {
        guard let bytes = try? HeaderJSON.encode(h, pretty: pretty) else { return "{}" }
        return String(decoding: bytes, as: UTF8.self)
    }

    // MARK: Helpers

    private func hex(_ v: UInt64) -> String { "0x" + String(v, radix: 16) }

    private func hexBytes(_ bytes: ArraySlice<UInt8>) -> String { SHA256.hexString(bytes) }

    private func jsonString(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 {
                    let h = String(u.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - h.count) + h
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out + "\""
    }

    /// Linux (x86-64, asm-generic) errno names.
    public static func linuxErrnoName(_ e: Int32) -> String? {
        guard e > 0, Int(e) < linuxErrnoNames.count else { return nil }
        let name = linuxErrnoNames[Int(e)]
        return name.isEmpty ? nil : name
    }
}

private let linuxErrnoNames: [String] = [
    "", "EPERM", "ENOENT", "ESRCH", "EINTR", "EIO", "ENXIO", "E2BIG", "ENOEXEC", "EBADF", "ECHILD",
    "EAGAIN", "ENOMEM", "EACCES", "EFAULT", "ENOTBLK", "EBUSY", "EEXIST", "EXDEV", "ENODEV", "ENOTDIR",
    "EISDIR", "EINVAL", "ENFILE", "EMFILE", "ENOTTY", "ETXTBSY", "EFBIG", "ENOSPC", "ESPIPE", "EROFS",
    "EMLINK", "EPIPE", "EDOM", "ERANGE", "EDEADLK", "ENAMETOOLONG", "ENOLCK", "ENOSYS", "ENOTEMPTY", "ELOOP",
    "", "ENOMSG", "EIDRM", "ECHRNG", "EL2NSYNC", "EL3HLT", "EL3RST", "ELNRNG", "EUNATCH", "ENOCSI",
    "EL2HLT", "EBADE", "EBADR", "EXFULL", "ENOANO", "EBADRQC", "EBADSLT", "", "EBFONT", "ENOSTR",
    "ENODATA", "ETIME", "ENOSR", "ENONET", "ENOPKG", "EREMOTE", "ENOLINK", "EADV", "ESRMNT", "ECOMM",
    "EPROTO", "EMULTIHOP", "EDOTDOT", "EBADMSG", "EOVERFLOW", "ENOTUNIQ", "EBADFD", "EREMCHG", "ELIBACC", "ELIBBAD",
    "ELIBSCN", "ELIBMAX", "ELIBEXEC", "EILSEQ", "ERESTART", "ESTRPIPE", "EUSERS", "ENOTSOCK", "EDESTADDRREQ", "EMSGSIZE",
    "EPROTOTYPE", "ENOPROTOOPT", "EPROTONOSUPPORT", "ESOCKTNOSUPPORT", "EOPNOTSUPP", "EPFNOSUPPORT", "EAFNOSUPPORT", "EADDRINUSE", "EADDRNOTAVAIL", "ENETDOWN",
    "ENETUNREACH", "ENETRESET", "ECONNABORTED", "ECONNRESET", "ENOBUFS", "EISCONN", "ENOTCONN", "ESHUTDOWN", "ETOOMANYREFS", "ETIMEDOUT",
    "ECONNREFUSED", "EHOSTDOWN", "EHOSTUNREACH", "EALREADY", "EINPROGRESS", "ESTALE", "EUCLEAN", "ENOTNAM", "ENAVAIL", "EISNAM",
    "EREMOTEIO", "EDQUOT", "ENOMEDIUM", "EMEDIUMTYPE", "ECANCELED", "ENOKEY", "EKEYEXPIRED", "EKEYREVOKED", "EKEYREJECTED", "EOWNERDEAD",
    "ENOTRECOVERABLE", "ERFKILL", "EHWPOISON",
]
