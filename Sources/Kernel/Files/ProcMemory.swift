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

    /// mem_rw's write into the guest's memory, page by page. The caller's
    /// own memory is logged by `effects`; another process's (a debugger
    /// planting a breakpoint) is written here and the target carried in
    /// the trace (`HostEffects.carry`), so that replay writes the same
    /// bytes there (`ProcMemoryCalls.replayWrite`), as PTRACE_POKEDATA does.
    /// `others`: whether another process's memory may be written (pwrite64
    /// write(2), writev and pwritev, whose replay writes the carried bytes again).
    func write(at address: UInt64, _ bytes: [UInt8], effects: inout HostEffects, caller: Process,
               others: Bool) -> Result<Int, Errno> {
        guard let p = process, p.zombieStatus == nil else { return .success(0) }
        guard p === caller || others else { return .failure(.perm) }
        let done: Int
        if p === caller {
            done = ProcMemory.pages(at: address, bytes) { at, chunk in (try? effects.writeForced(at, chunk)) != nil }
        } else {
            done = ProcMemory.pages(at: address, bytes) { at, chunk in (try? p.memory.write(at, chunk, access: .kernel)) != nil }
            if done > 0 { effects.carry(Bytes.i32(p.pid) + Bytes.u64(address)) }
        }
        if done == 0 && !bytes.isEmpty { return .failure(.io) }
        return .success(done)
    }

    /// Writes `bytes` from `address` a page at a time until `put` fails:
    /// how many landed.
    static func pages(at address: UInt64, _ bytes: [UInt8], _ put: (UInt64, [UInt8]) -> Bool) -> Int {
        var done = 0
        while done < bytes.count {
            let (at, overflow) = address.addingReportingOverflow(UInt64(done))
            if overflow { break }
            let chunk = min(bytes.count - done, Int(4096 - at & 4095))
            guard put(at, Array(bytes[done..<done + chunk])) else { break }
            done += chunk
        }
        return done
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
            return write(mem, at: args[3], b, advance: false, effects: &effects, process: process, others: true)
        case SYS.lseek:
            return mem.seek(Int64(bitPattern: args[1]), whence: Int32(truncatingIfNeeded: args[2]))
        default:
            return nil
        }
    }

    /// Replay's half of a write into another process's memory: the bytes
    /// the recording wrote there (the first `outcome.result` of `bytes`,
    /// the caller's buffer), at the process and address it carried.
    static func replayWrite(_ c: SyscallCall, _ outcome: HostOutcome, bytes: [UInt8]) throws {
        guard c.world.isReplaying, outcome.result > 0, let raw = outcome.carried.first else { return }
        // A comm write carries 8 bytes (`ProcCommFile`); a mem write 12.
        if raw.count == 8 { return try ProcCommFile.named(c, outcome, bytes: bytes) }
        guard raw.count == 12, Int(outcome.result) <= bytes.count else {
            throw RunStopped("the trace is damaged: a /proc/<pid>/mem write carries \(raw.count) bytes, not 12")
        }
        let pid = Int32(bitPattern: Bytes.u32(raw, at: 0)), address = Bytes.u64(raw, at: 4)
        let family: ProcessFamily = c.process.family
        guard let target = family.processes.first(where: { $0.pid == pid && $0.zombieStatus == nil }) else {
            throw RunStopped("replay diverged: the recording wrote the memory of process \(pid), which is not running here")
        }
        let chunk = Array(bytes.prefix(Int(outcome.result)))
        let n = ProcMemory.pages(at: address, chunk) { at, part in (try? target.memory.write(at, part, access: .kernel)) != nil }
        guard n == chunk.count else {
            throw RunStopped("replay diverged: the recorded write into process \(pid)'s memory at 0x\(String(address, radix: 16)) does not fit")
        }
    }

    static func write(_ mem: ProcMemory, at: UInt64, _ bytes: [UInt8], advance: Bool, effects: inout HostEffects,
                      process: Process, others: Bool = false) -> Int64 {
        switch mem.write(at: at, bytes, effects: &effects, caller: process, others: others) {
        case .failure(let e): return e.result
        case .success(let n):
            if advance { mem.offset &+= UInt64(n) }
            return Int64(n)
        }
    }
}
