import CHost
import Glibc

/// How one argument of a syscall that detrec performs on the host as it is
/// is carried across: guest descriptors become host descriptors, guest
/// pointers become host buffers copied in or out.
public enum PassArg: Equatable {
    /// A plain number, passed unchanged.
    case value
    /// A guest file descriptor.
    case fd
    /// A directory descriptor, or AT_FDCWD.
    case dirfd
    /// A NUL-terminated path.
    case path
    /// A path or NULL.
    case pathOrNull
    /// A NUL-terminated string the kernel does not resolve (a symlink's target).
    case string
    /// A struct of this size the kernel fills in on success.
    case out(Int)
    /// The same, or NULL.
    case outOrNull(Int)
    /// A buffer whose size is argument `sizeArg`; the result says how many bytes were filled.
    case outFilled(sizeArg: Int)
    /// A struct of this size the kernel reads.
    case input(Int)
    /// The same, or NULL.
    case inputOrNull(Int)
    /// A buffer whose size is argument `sizeArg`, read by the kernel.
    case inputSized(sizeArg: Int)
    /// A struct the kernel reads and writes back (fcntl's struct flock).
    case inOut(Int)
    /// nanosleep's remaining time: written back only when interrupted.
    case remainder(Int)
}

/// The largest buffer detrec moves in one host call: larger reads and
/// writes are short, which Linux allows.
let maxTransfer = 64 << 20

/// A handler that performs the syscall on the host with its arguments
/// carried across as `spec` says, and copies its outputs back into the guest.
public func passthrough(_ spec: PassArg...) -> Passthrough {
    Passthrough(spec: spec)
}

/// What `passthrough` makes: `SyscallTable.add` registers it as performed
/// on the host.
public struct Passthrough {
    public let spec: [PassArg]
    public var handler: SyscallHandler { { [spec] c in try performPassthrough(c, spec) } }
}

/// One argument of a passthrough call, decoded.
enum Carried {
    case value(UInt64)
    case file(OpenFile?)
    case buffer([UInt8], guest: UInt64, copyOut: CopyOut)
}
enum CopyOut { case none, fixed(Int), filled(Int), onInterrupt(Int) }

/// `waitOn`: the argument holding a descriptor the call may wait on, and
/// for what (POLLIN): a timer may interrupt that wait while recording.
func performPassthrough(_ c: SyscallCall, _ spec: [PassArg], waitOn: (Int, Int16)? = nil) throws -> Int64 {
    let process = c.process
    // Decode and check everything the guest passed before touching the host,
    // identically in record and replay.
    var carried: [Carried] = []
    for (i, kind) in spec.enumerated() {
        switch kind {
        case .value:
            carried.append(.value(c.arg(i)))
        case .fd:
            carried.append(.file(try c.file(i)))
        case .dirfd:
            carried.append(.file(try c.directory(i)))
        case .path, .pathOrNull:
            if c.arg(i) == 0, case .pathOrNull = kind { carried.append(.value(0)); continue }
            // The guest's path as it gave it: GuestPathGate sees it so, and
            // it is made relative to the process's own directory after.
            carried.append(.buffer(try c.cString(i, limit: SyscallCall.pathMax) + [0], guest: c.arg(i), copyOut: .none))
        case .string:
            carried.append(.buffer(try c.cString(i, limit: SyscallCall.pathMax) + [0], guest: c.arg(i), copyOut: .none))
        case .out(let n), .outOrNull(let n):
            if c.arg(i) == 0, case .outOrNull = kind { carried.append(.value(0)); continue }
            try c.checkWritable(c.arg(i), count: n)
            carried.append(.buffer([UInt8](repeating: 0, count: n), guest: c.arg(i), copyOut: .fixed(n)))
        case .outFilled(let sizeArg):
            let n: Int
            if c.number == SYS.read || c.number == SYS.pread64 {
                n = try c.transferSize(buffer: i, size: sizeArg, write: true)
            } else {
                n = min(try c.size(sizeArg), maxTransfer)
                try c.checkWritable(c.arg(i), count: n)
            }
            // Allocated in the host part (so that it is not shared, and
            // pinning it copies nothing) and not zeroed: the host fills what it
            // returns and only that is copied out, so a large buffer costs
            // what the call transfers.
            carried.append(.buffer([], guest: c.arg(i), copyOut: .filled(n)))
        case .input(let n), .inputOrNull(let n):
            if c.arg(i) == 0, case .inputOrNull = kind { carried.append(.value(0)); continue }
            carried.append(.buffer(try c.read(c.arg(i), count: n), guest: c.arg(i), copyOut: .none))
        case .inOut(let n):
            try c.checkWritable(c.arg(i), count: n)
            carried.append(.buffer(try c.read(c.arg(i), count: n), guest: c.arg(i), copyOut: .fixed(n)))
        case .remainder(let n):
            if c.arg(i) == 0 { carried.append(.value(0)); continue }
            try c.checkWritable(c.arg(i), count: n)
            carried.append(.buffer([UInt8](repeating: 0, count: n), guest: c.arg(i), copyOut: .onInterrupt(n)))
        case .inputSized(let sizeArg):
            let n = c.number == SYS.pwrite64 ? try c.transferSize(buffer: i, size: sizeArg, write: false)
                : min(try c.size(sizeArg), maxTransfer)
            carried.append(.buffer(try c.read(c.arg(i), count: n), guest: c.arg(i), copyOut: .none))
        }
    }
    let number = c.number
    let args = c.args
    let rip = c.rip
    let cwd = process.cwd
    let cwdFD = cwd.hostFD
    let umask = process.umask
    let outcome = try c.hostOutcome { (effects: inout HostEffects) throws(Errno) -> Int64 in
        var buffers = carried
        if let memory = ProcMemoryCalls.intercept(number, buffers: carried, args: args, effects: &effects, process: process) {
            return memory
        }
        try GuestPathGate.apply(number, spec: spec, carried: &buffers, args: args, process: process, rip: rip)
        // Relative to the process's working directory, not detrec's: a path
        // after a directory argument is the *at call's (AT_FDCWD becomes the
        // working directory below); any other goes through it.
        for (i, kind) in spec.enumerated() where kind == .path || kind == .pathOrNull {
            guard i == 0 || spec[i - 1] != .dirfd, PathRule.of(number, argument: i, args: args).isPath,
                  case .buffer(let bytes, let guest, let copyOut) = buffers[i] else { continue }
            buffers[i] = .buffer(cwd.hostPath(Array(bytes.dropLast())) + [0], guest: guest, copyOut: copyOut)
        }
        var raw = [Int](repeating: 0, count: 6)
        var bufferIndex: [Int] = []
        for (i, item) in buffers.enumerated() {
            switch item {
            case .value(let v): raw[i] = Int(bitPattern: UInt(v))
            case .file(let f):
                if let f { guard let fd = f.hostFD else { throw .badf }; raw[i] = Int(fd) } else { raw[i] = Int(cwdFD) }
            case .buffer(_, let guest, .filled(let n)):
                buffers[i] = .buffer([UInt8](unsafeUninitializedCapacity: n) { _, count in count = n }, guest: guest, copyOut: .filled(n))
                bufferIndex.append(i)
            case .buffer: bufferIndex.append(i)
            }
        }
        if let (i, events) = waitOn, !TimerSyscalls.waitReady(process, fd: Int32(truncatingIfNeeded: raw[i]), events: events) {
            return Errno.intr.result
        }
        // A transfer cut short at the guest's first inaccessible page: the
        // host moves only what fits (the buffer's size, not the guest's count).
        for (i, kind) in spec.enumerated() {
            switch kind {
            case .outFilled(let s), .inputSized(let s):
                if case .buffer(let b, _, _) = buffers[i], s < raw.count, UInt64(b.count) < args[s] { raw[s] = b.count }
            default: break
            }
        }
        let r = FileCreationMask.applying(FileCreationMask.creating.contains(number) ? umask : nil) {
            HostCall.withBuffers(&buffers, bufferIndex, raw) { raw in
                chost_syscall(Int(number), raw[0], raw[1], raw[2], raw[3], raw[4], raw[5])
            }
        }
        guard r >= 0 || r == -Int(EINTR) else { return Int64(r) }
        for i in bufferIndex {
            guard case .buffer(let bytes, let guest, let copyOut) = buffers[i] else { continue }
            switch copyOut {
            case .none: break
            case .fixed(let n): if r >= 0 { try effects.write(guest, bytes[0..<n]) }
            case .onInterrupt(let n): if r == -Int(EINTR) { try effects.write(guest, bytes[0..<n]) }
            case .filled: if r > 0 { try effects.write(guest, bytes[0..<min(r, bytes.count)]) }
            }
        }
        return Int64(r)
    }
    // A pwrite64 into another process's /proc/<pid>/mem is written again on replay.
    if number == SYS.pwrite64, !outcome.carried.isEmpty, case .buffer(let bytes, _, _)? = carried.dropFirst().first {
        try ProcMemoryCalls.replayWrite(c, outcome, bytes: bytes)
    }
    return outcome.result

    enum HostCall {
        /// Pins each carried buffer and passes its address in its argument slot.
        static func withBuffers(_ items: inout [Carried], _ indices: [Int], _ raw: [Int], _ body: ([Int]) -> Int) -> Int {
            func pin(_ k: Int, _ raw: [Int]) -> Int {
                if k == indices.count { return body(raw) }
                let i = indices[k]
                guard case .buffer(var bytes, let guest, let copyOut) = items[i] else { return pin(k + 1, raw) }
                // Drop the other reference first, so pinning does not copy the buffer.
                items[i] = .value(0)
                let r = bytes.withUnsafeMutableBytes { p -> Int in
                    var raw = raw
                    raw[i] = Int(bitPattern: p.baseAddress)
                    return pin(k + 1, raw)
                }
                items[i] = .buffer(bytes, guest: guest, copyOut: copyOut)
                return r
            }
            return pin(0, raw)
        }
    }
}

/// A raw host syscall, for handlers that build their own arguments.
public func hostSyscall(_ number: UInt64, _ a: Int = 0, _ b: Int = 0, _ c: Int = 0, _ d: Int = 0, _ e: Int = 0, _ f: Int = 0) -> Int64 {
    Int64(chost_syscall(Int(number), a, b, c, d, e, f))
}
