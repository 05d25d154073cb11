import CHost
import KVMUser

/// rdtsc and rdtscp read the time-stamp counter without a syscall, and PVM
/// cannot make them trap (CR4.TSD has no effect there, see
/// shared/docs/platform.md). So detrec finds them in the program's code as
/// it is mapped and patches their first byte with int3 (hidden from every
/// read through GuestMemory's overlay). The #BP then comes to detrec, which
/// reads the counter while recording and logs it like a syscall result;
/// replay hands back the recorded value. Works the same on VMX hosts.
public enum TimestampCounter {
    /// The pseudo-syscall numbers under which readings are logged.
    public static let rdtscNumber: UInt64 = 0x4000_0031
    public static let rdtscpNumber: UInt64 = 0x4000_01f9

    /// Scans [start, end) of guest code and patches every rdtsc/rdtscp.
    public static func patch(_ process: Process, from start: UInt64, to end: UInt64) {
        guard end > start, end - start < 1 << 30 else { return }
        let size = Int(end - start)
        guard let code = try? process.memory.read(start, count: size, access: .kernel) else { return }
        let max = 4096
        var offsets = [UInt32](repeating: 0, count: max)
        var lengths = [UInt8](repeating: 0, count: max)
        let found = code.withUnsafeBufferPointer { c in
            offsets.withUnsafeMutableBufferPointer { o in
                lengths.withUnsafeMutableBufferPointer { l in
                    chost_find_timestamp_reads(c.baseAddress, size, o.baseAddress, l.baseAddress, Int32(max))
                }
            }
        }
        guard found > 0 else { return }
        for i in 0..<Int(found) {
            let site = start + UInt64(offsets[i])
            if (try? process.memory.insertPatch(site)) != nil {
                process.timestampSites[site] = Int(lengths[i])
            }
        }
    }

    /// Patches the executable parts of every mapping of a new image.
    public static func patchExecutable(_ process: Process) {
        for m in process.space.mappings where m.protection.contains(.execute) {
            patch(process, from: m.start, to: m.end)
        }
    }

    /// The instruction length at a patched site whose int3 the guest just
    /// hit (RIP is one past the int3), or nil for any other #BP.
    static func site(_ process: Process, _ e: GuestException) -> (UInt64, Int)? {
        guard e.vector == GuestException.breakpoint else { return nil }
        let site = e.rip &- 1
        guard let length = process.timestampSites[site], process.memory.patches[site] != nil else { return nil }
        return (site, length)
    }
}
