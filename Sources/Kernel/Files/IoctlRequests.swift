import Glibc

/// ioctl(2): the requests programs and runtimes make, each with the size
/// of what it reads or writes, so the host fills exactly that and replay
/// writes exactly the recorded bytes. Terminal requests go to the host tty
/// (ENOTTY on anything else, as Linux says); the job-control ones are kept
/// in the emulation where they name the recording's process groups. A
/// request not listed is ENOTTY, reported once with the guest RIP.
enum IoctlRequests {
    /// How a request's third argument is carried.
    enum Shape {
        /// A plain number (or unused).
        case value
        /// The kernel writes this many bytes there.
        case out(Int)
        /// The kernel reads this many bytes there.
        case input(Int)
        /// Both.
        case inOut(Int)
    }

    static let TIOCGPGRP: UInt32 = 0x540F, TIOCSPGRP: UInt32 = 0x5410, TIOCSCTTY: UInt32 = 0x540E
    static let TIOCNOTTY: UInt32 = 0x5422, TIOCGSID: UInt32 = 0x5429, TIOCGPTPEER: UInt32 = 0x5441
    static let FIONCLEX: UInt32 = 0x5450, FIOCLEX: UInt32 = 0x5451, FIOASYNC: UInt32 = 0x5452
    static let FICLONE: UInt32 = 0x4004_9409, FICLONERANGE: UInt32 = 0x4020_940D, FIDEDUPERANGE: UInt32 = 0xC018_9436

    /// The requests performed on the host as they are, by number.
    static let shapes: [UInt32: Shape] = [
        // termios: TCGETS, TCSETS, TCSETSW, TCSETSF (struct termios, 36 bytes)
        0x5401: .out(36), 0x5402: .input(36), 0x5403: .input(36), 0x5404: .input(36),
        // TCGETA, TCSETA, TCSETAW, TCSETAF (struct termio, 18 bytes)
        0x5405: .out(18), 0x5406: .input(18), 0x5407: .input(18), 0x5408: .input(18),
        // TCGETS2, TCSETS2, TCSETSW2, TCSETSF2 (struct termios2, 44 bytes)
        0x802C_542A: .out(44), 0x402C_542B: .input(44), 0x402C_542C: .input(44), 0x402C_542D: .input(44),
        // TCSBRK, TCXONC, TCFLSH, TCSBRKP, TIOCSBRK, TIOCCBRK, TIOCEXCL, TIOCNXCL
        0x5409: .value, 0x540A: .value, 0x540B: .value, 0x5425: .value, 0x5427: .value, 0x5428: .value,
        0x540C: .value, 0x540D: .value,
        // TIOCOUTQ, TIOCGWINSZ, TIOCSWINSZ
        0x5411: .out(4), 0x5413: .out(8), 0x5414: .input(8),
        // TIOCMGET, TIOCMBIS, TIOCMBIC, TIOCMSET, TIOCGSOFTCAR, TIOCSSOFTCAR
        0x5415: .out(4), 0x5416: .input(4), 0x5417: .input(4), 0x5418: .input(4), 0x5419: .out(4), 0x541A: .input(4),
        // FIONREAD (TIOCINQ, SIOCINQ), TIOCPKT, FIONBIO, TIOCSETD, TIOCGETD
        0x541B: .out(4), 0x5420: .input(4), 0x5421: .input(4), 0x5423: .input(4), 0x5424: .out(4),
        // TIOCGPTN, TIOCSPTLCK, TIOCGDEV, TIOCGPKT, TIOCGPTLCK, TIOCGEXCL
        0x8004_5430: .out(4), 0x4004_5431: .input(4), 0x8004_5432: .out(4), 0x8004_5438: .out(4),
        0x8004_5439: .out(4), 0x8004_5440: .out(4),
        // FIOQSIZE (loff_t), FIGETBSZ
        0x5460: .out(8), 0x2: .out(4),
        // FS_IOC_GETFLAGS, FS_IOC_SETFLAGS, FS_IOC_GETVERSION, FS_IOC_SETVERSION: an int
        // whatever the long in their names says, and their 32-bit twins.
        0x8008_6601: .out(4), 0x4008_6602: .input(4), 0x8008_7601: .out(4), 0x4008_7602: .input(4),
        0x8004_6601: .out(4), 0x4004_6602: .input(4), 0x8004_7601: .out(4), 0x4004_7602: .input(4),
        // FS_IOC_FSGETXATTR, FS_IOC_FSSETXATTR (struct fsxattr), FS_IOC_GETFSLABEL,
        // FS_IOC_GETFSUUID, FS_IOC_GETFSSYSFSPATH
        0x801C_581F: .out(28), 0x401C_5820: .input(28), 0x8100_9431: .out(256), 0x8011_1500: .out(17),
        0x8081_1501: .out(129),
        // RNDGETENTCNT (/dev/random)
        0x8004_5200: .out(4),
        // Sockets: SIOCATMARK, SIOCGSTAMP, SIOCGSTAMPNS, SIOCOUTQNSD; the
        // SIOCGIF* queries of one interface (struct ifreq, 40 bytes).
        0x8905: .out(4), 0x8906: .out(16), 0x8907: .out(16), 0x894B: .out(4),
        0x8910: .inOut(40), 0x8913: .inOut(40), 0x8915: .inOut(40), 0x8917: .inOut(40), 0x8919: .inOut(40),
        0x891B: .inOut(40), 0x891D: .inOut(40), 0x8921: .inOut(40), 0x8927: .inOut(40), 0x8933: .inOut(40),
        0x8942: .inOut(40),
    ]

    static func register(_ t: inout SyscallTable) {
        t.add(SYS.ioctl, .host, note: "terminal, descriptor, FS_IOC_* and socket requests of known sizes; job control kept per recording; others ENOTTY with a report", ioctl)
    }

    static func ioctl(_ c: SyscallCall) throws -> Int64 {
        let fd = c.int(0)
        let file = try c.file(0)
        let request = UInt32(truncatingIfNeeded: c.arg(1))
        if let shape = shapes[request] {
            switch shape {
            case .value: return try performPassthrough(c, [.fd, .value, .value])
            case .out(let n): return try performPassthrough(c, [.fd, .value, .out(n)])
            case .input(let n): return try performPassthrough(c, [.fd, .value, .input(n)])
            case .inOut(let n): return try performPassthrough(c, [.fd, .value, .inOut(n)])
            }
        }
        switch request {
        case FIOCLEX, FIONCLEX:
            c.process.files.setCloseOnExec(fd, request == FIOCLEX)
            return 0
        case FIOASYNC:
            return try FcntlCommands.setAsync(c, file, on: try c.readValue(c.arg(2), as: Int32.self) != 0)
        case TIOCGPGRP, TIOCSPGRP, TIOCGSID, TIOCSCTTY, TIOCNOTTY:
            return try TerminalJobControl.ioctl(c, request: request)
        case TIOCGPTPEER:
            // The other side of a pseudo-terminal master: a new descriptor.
            let flags = c.int(2)
            guard flags & ~(O_ACCMODE | O_NOCTTY | O_NONBLOCK | O_CLOEXEC) == 0 else { throw Errno.inval }
            return try c.newDescriptor(name: "/dev/pts", closeOnExec: flags & O_CLOEXEC != 0) { _ throws(Errno) -> Int64 in
                guard let h = file.hostFD else { throw .badf }
                return hostSyscall(SYS.ioctl, Int(h), Int(request), Int(flags | O_CLOEXEC))
            }
        case FICLONE, FICLONERANGE, FIDEDUPERANGE:
            return try reflink(c, request: request)
        default:
            c.process.report("ioctl request 0x\(String(request, radix: 16)) on fd \(fd) is not supported; returning ENOTTY",
                             key: 0x1_0000_0000 | UInt64(request), rip: c.rip)
            throw Errno.notty
        }
    }

    /// FICLONE, FICLONERANGE and FIDEDUPERANGE: the arguments checked as
    /// Linux checks them, then EOPNOTSUPP, as on a filesystem without
    /// shared extents (a clone would make the recording's files share
    /// blocks the trace does not know of).
    static func reflink(_ c: SyscallCall, request: UInt32) throws -> Int64 {
        switch request {
        case FICLONE:
            guard c.process.files[c.int(2)] != nil else { throw Errno.badf }
        case FICLONERANGE:
            let range = try c.read(c.arg(2), count: 32)
            guard c.process.files[Int32(bitPattern: UInt32(truncatingIfNeeded: Bytes.u64(range, at: 0)))] != nil else { throw Errno.badf }
        default:
            // struct file_dedupe_range: a header of 24 bytes, then dest_count entries.
            let header = try c.read(c.arg(2), count: 24)
            let count = Int(UInt16(truncatingIfNeeded: Bytes.u32(header, at: 16)))
            _ = try c.read(c.arg(2) + 24, count: count * 32)
        }
        throw Errno.notsup
    }
}
