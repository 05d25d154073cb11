import Glibc
import KVMUser

/// An open /proc/<pid>/mem of a guest process: reads and writes go to that
/// process's guest memory through `GuestMemory`, at the file offset taken
/// as a guest address, as fs/proc/base.c mem_rw does (FOLL_FORCE: mapped
/// pages are reachable whatever their protection; nothing else is, and
/// detrec's own pages are not guest memory at all).
///
/// Recording only, like every host call: the handlers reach it from inside
/// `call.host`, so replay re-applies what the guest read (and the bytes it
/// wrote into its own memory) from the trace.
public final class ProcMemory {
    weak var process: Process?
    var offset: UInt64 = 0

    init(process: Process) { self.process = process }

    /// Linux moves at most this much per call through its bounce page loop;
    /// detrec caps it like other transfers.
    static let limit = maxTransfer

    /// mem_rw's read: the bytes readable from `at`, EIO when the first page
    /// is not; a short count where a later page is missing.
    func read(at address: UInt64, count: Int) -> Result<[UInt8], Errno> {
        guard let p = process, p.zombieStatus == nil else { return .success([]) }
        var out: [UInt8] = []
        var at = address
        var left = min(count, ProcMemory.limit)
        while left > 0 {
            let chunk = min(left, Int(4096 - at & 4095))
            guard let bytes = try? p.memory.read(at, count: chunk, access: .kernel) else { break }
            out += bytes
            left -= chunk
            let (next, overflow) = at.addingReportingOverflow(UInt64(chunk))
            if overflow { break }
            at = next
        }
        if out.isEmpty && count > 0 { return .failure(.io) }
        return .success(out)
    }

    /// mem_rw's write into the guest's memory, page by page; the bytes that
    /// landed are logged by `effects` (only the caller's own memory is
    /// logged, so only it may be written).
    func write(at address: UInt64, _ bytes: [UInt8], effects: inout HostEffects, caller: Process) -> Result<Int, Errno> {
        guard let p = process, p.zombieStatus == nil else { return .success(0) }
        guard p === caller else { return .failure(.perm) }
        var done = 0
        while done < bytes.count {
            let (at, overflow) = address.addingReportingOverflow(UInt64(done))
            if overflow { break }
            let chunk = min(bytes.count - done, Int(4096 - at & 4095))
            do { try effects.writeForced(at, Array(bytes[done..<done + chunk])) } catch { break }
            done += chunk
        }
        if done == 0 && !bytes.isEmpty { return .failure(.io) }
        return .success(done)
    }

    /// mem_lseek: SEEK_SET and SEEK_CUR only; the offset is an address and
    /// may look negative (Linux forces the return to count as success).
    func seek(_ value: Int64, whence: Int32) -> Int64 {
        switch whence {
        case SEEK_SET: offset = UInt64(bitPattern: value)
        case SEEK_CUR: offset = offset &+ UInt64(bitPattern: value)
        default: return Errno.inval.result
        }
        return Int64(bitPattern: offset)
    }
}

/// The calls on descriptors of the guest's /proc that the host cannot
/// perform: read, pread64, pwrite64 and lseek on a /proc/<pid>/mem, and
/// lseek on a directory detrec lists itself. From inside the host part of
/// the passthrough (`performPassthrough`); nil for any other descriptor or call.
enum ProcMemoryCalls {
    static func intercept(_ number: UInt64, buffers: [Carried], args: [UInt64], effects: inout HostEffects,
                          process: Process) -> Int64? {
        guard case .file(let f?)? = buffers.first else { return nil }
        if number == SYS.lseek, f.listing != nil {
            // A directory detrec lists itself: offsets are entry positions
            // (getdents64's d_off), so rewinddir and seekdir work.
            guard Int32(truncatingIfNeeded: args[2]) == SEEK_SET, let to = Int(exactly: Int64(bitPattern: args[1])), to >= 0 else {
                return Errno.inval.result
            }
            f.listingCursor = to
            return Int64(to)
        }
        guard let mem = f.procMemory else { return nil }
        switch number {
        case SYS.read, SYS.pread64:
            guard buffers.count > 1, case .buffer(let b, let guest, let copyOut) = buffers[1] else { return nil }
            let at = number == SYS.read ? mem.offset : args[3]
            // An output buffer is allocated only for the host call: its size is the copy-out's.
            var count = b.count
            if case .filled(let n) = copyOut { count = n }
            switch mem.read(at: at, count: count) {
            case .failure(let e): return e.result
            case .success(let bytes):
                do { try effects.write(guest, bytes) } catch { return error.result }
                if number == SYS.read { mem.offset &+= UInt64(bytes.count) }
                return Int64(bytes.count)
            }
        case SYS.pwrite64:
            guard buffers.count > 1, case .buffer(let b, _, _) = buffers[1] else { return nil }
            return write(mem, at: args[3], b, advance: false, effects: &effects, process: process)
        case SYS.lseek:
            return mem.seek(Int64(bitPattern: args[1]), whence: Int32(truncatingIfNeeded: args[2]))
        default:
            return nil
        }
    }

    static func write(_ mem: ProcMemory, at: UInt64, _ bytes: [UInt8], advance: Bool, effects: inout HostEffects,
                      process: Process) -> Int64 {
        switch mem.write(at: at, bytes, effects: &effects, caller: process) {
        case .failure(let e): return e.result
        case .success(let n):
            if advance { mem.offset &+= UInt64(n) }
            return Int64(n)
        }
    }
}
