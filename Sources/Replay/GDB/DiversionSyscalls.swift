import Glibc
import Kernel
import KVMUser

/// The syscalls of a diversion (Diversion.swift). They cannot come from
/// the trace (the recording never made them) and must not change the
/// emulated kernel (the diversion is thrown away, its kernel state is
/// not), so, as rr's diversions do, only writes to the standard output
/// and error are performed: `write` and `writev` on descriptors 1 and 2
/// go to detrec's own stdout and stderr, so `call puts("x")` shows its
/// output. Every other syscall fails with ENOSYS, named once per number
/// on detrec's stderr.
final class DiversionSyscalls {
    static let write: UInt64 = 1
    static let writev: UInt64 = 20
    /// More than this in one call is cut short (a partial write, as a pipe may do).
    static let limit = 1 << 20
    static let iovecLimit = 1024

    private var refused: Set<UInt64> = []

    /// Performs the syscall in the registers (RIP past it) and sets RAX.
    func perform(_ session: ReplaySession) {
        let machine = session.machine
        let r = machine.registers
        let result: Int64
        switch r.rax {
        case DiversionSyscalls.write where r.rdi == 1 || r.rdi == 2:
            result = output(fd: Int32(r.rdi), [(r.rsi, r.rdx)], session.memory)
        case DiversionSyscalls.writev where r.rdi == 1 || r.rdi == 2:
            result = gather(r.rsi, count: r.rdx, session.memory).map { output(fd: Int32(r.rdi), $0, session.memory) } ?? Errno.fault.result
        default:
            if !refused.contains(r.rax) {
                refused.insert(r.rax)
                let name = SyscallNames.name(SyscallNumber.dispatched(r.rax))
                let rip = r.rip &- 2
                var line = "detrec: in a function called from gdb, \(name) (\(r.rax)) at guest rip 0x\(String(rip, radix: 16)) fails with ENOSYS: outside the recording only writes to stdout and stderr are performed\n"
                line.withUTF8 { _ = Glibc.write(2, $0.baseAddress, $0.count) }
            }
            result = Errno.nosys.result
        }
        machine.registers.rax = UInt64(bitPattern: result)
    }

    /// The (base, length) pairs of an iovec array; nil when unreadable or
    /// too long (EFAULT, EINVAL as Linux's are folded into EFAULT here).
    private func gather(_ iov: UInt64, count: UInt64, _ memory: GuestMemory) -> [(UInt64, UInt64)]? {
        guard count <= UInt64(DiversionSyscalls.iovecLimit) else { return nil }
        var out: [(UInt64, UInt64)] = []
        for i in 0..<count {
            let at = iov &+ 16 &* i
            guard let base = try? memory.readValue(at, as: UInt64.self), let length = try? memory.readValue(at &+ 8, as: UInt64.self) else {
                return nil
            }
            out.append((base, length))
        }
        return out
    }

    /// Writes the buffers to the host descriptor; the count, or EFAULT when
    /// the first one cannot be read.
    private func output(fd: Int32, _ buffers: [(UInt64, UInt64)], _ memory: GuestMemory) -> Int64 {
        var done = 0
        for (base, length) in buffers {
            let n = Int(min(length, UInt64(DiversionSyscalls.limit - done)))
            guard n > 0 else { continue }
            guard let bytes = try? memory.read(base, count: n, access: .user) else {
                return done == 0 ? Errno.fault.result : Int64(done)
            }
            var at = 0
            while at < bytes.count {
                let w = bytes[at...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
                if w < 0 && errno == EINTR { continue }
                guard w > 0 else { return done + at == 0 ? Errno.io.result : Int64(done + at) }
                at += w
            }
            done += n
            if done >= DiversionSyscalls.limit { break }
        }
        return Int64(done)
    }
}
