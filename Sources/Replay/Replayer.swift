import Glibc
import Kernel
import KVMUser
import Trace

/// `detrec replay`: re-executes a recorded program on the vCPU, feeding it
/// the trace instead of the host.
public struct Replayer {
    public init() {}

    public struct Outcome {
        public var termination: Termination
        public var events: Int
    }

    public func replay(traceDirectory: String, skipSleeps: Bool = false) throws -> Outcome {
        let prepared = try prepare(traceDirectory: traceDirectory)
        prepared.world.skipSleeps = skipSleeps
        let termination = try ProcessRunner(process: prepared.process, world: prepared.world).run()
        try prepared.world.finishReplay()
        return Outcome(termination: termination, events: prepared.reader.nextEventIndex)
    }

    /// A replay set up and stopped before its first instruction. (Added for
    /// the gdb stub, `GDB/`, which drives the run itself.)
    struct Prepared {
        let reader: TraceReader
        let world: ReplayingWorld
        let process: Process
    }

    /// Everything `replay` does before running: read the trace, build the
    /// machine and the process exactly as recorded.
    func prepare(traceDirectory: String) throws -> Prepared {
        let reader = try TraceReader(directory: traceDirectory)
        let header = reader.header
        let executable = try reader.storedFile(sha256: header.executable.sha256)
        var interpreter: (path: String, bytes: [UInt8])?
        if let path = header.extra["interpreter"], !path.isEmpty, let sha = header.extra["interpreterSHA256"] {
            interpreter = (path, try reader.storedFile(sha256: sha))
        }
        let device = try KVMDevice()
        let table = CPUIDTable(leaves: header.cpuid.map {
            CPUIDLeaf(function: $0.function, index: $0.index, flags: $0.flags, eax: $0.eax, ebx: $0.ebx, ecx: $0.ecx, edx: $0.edx)
        }, xcr0: header.xcr0)
        if let problem = try table.incompatibility(with: device) {
            let model = header.extra["cpuModel"] ?? "host"
            throw KVMError.cpuidIncompatible("its CPU model (\(model)) \(problem)")
        }
        let machine = try UserMachine(device: device, cpuid: table)
        let world = ReplayingWorld(reader: reader)
        func id(_ key: String) -> UInt32 { header.extra[key].flatMap { UInt32($0) } ?? 0 }
        let stdio = (header.extra["stdio"] ?? "0,1,2").split(separator: ",").compactMap { Int32($0) }
        let inherited = InheritedState(extra: header.extra, pid: Int32(bitPattern: id("pid")))
        let info = StartupInfo(argvBytes: try header.argvBytes(), envpBytes: try header.envpBytes(), execPath: header.extra["execfn"] ?? header.executable.path,
                               exePath: header.executable.path,
                               atRandom: try world.startupRandom(),
                               uid: id("uid"), euid: id("euid"), gid: id("gid"), egid: id("egid"),
                               pid: Int32(bitPattern: id("pid")), credentials: inherited.credentials)
        let process = try Launch.process(machine: machine, executable: executable, interpreter: interpreter, info: info, stdio: stdio, recording: false,
                                             cwd: header.cwd, inherited: inherited)
        Launch.inherit(process, mask: header.extra["sigmask"].flatMap { UInt64($0) } ?? 0,
                       ignored: header.extra["sigignored"].flatMap { UInt64($0) } ?? 0)
        return Prepared(reader: reader, world: world, process: process)
    }
}
