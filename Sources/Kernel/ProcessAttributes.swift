/// The per-process kernel state a child inherits: fork copies this value
/// as a whole (`Process.init(sharing:thread:from:)`), and each field says
/// what exec does to it. Kept by the emulation, never the host's
/// process-wide state, so one recorded process changing it leaves the
/// others and detrec alone.
public struct ProcessAttributes {
    /// The path the program was started with (AT_EXECFN, /proc/self/exe);
    /// exec sets it.
    public var executablePath: String
    public var uid: UInt32 = 0
    /// uid, euid, gid, egid, as the auxiliary vector gives them.
    public var credentials: [UInt32] = [0, 0, 0, 0]
    /// Resource limits the guest set (prlimit64), by resource number; exec keeps them.
    public var limits: [Int32: (soft: UInt64, hard: UInt64)] = [:]
    /// Set by `detrec record --chaos`: randomized scheduling (recording only).
    public var chaos: Scheduler.Chaos?
    /// The auxiliary vector as built (for /proc/self/auxv), argv and envp; exec sets them.
    public var auxv: [UInt8] = []
    public var argv: [String] = []
    public var envp: [String] = []

    public init(executablePath: String) {
        self.executablePath = executablePath
    }
}
