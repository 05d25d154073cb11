import Glibc

/// The cost of one guest→host→guest round trip on this host, measured with
/// detrec's own machinery (`UserMachine.run`, the entry stubs, the sync-regs
/// register transfer) and no syscall emulation at all: the floor that every
/// recorded or replayed syscall and every trapped exception pays.
///
/// The guest is hand-assembled. It loops N times over either `syscall` or
/// `int3`, keeping its counter in r12 (SYSCALL clobbers rcx and r11), then
/// makes one marker syscall (eax = 60) and starts over. After each exit the
/// host only calls `run()` again: RIP is already past the `syscall`/`int3`.
/// Only the N loop exits of a batch are timed; the marker is not.
public enum ExitProbe {
    /// What one kind of exit costs, in microseconds per round trip.
    public struct Cost: Sendable, Equatable {
        public var kind: String
        public var exitsPerBatch: Int
        /// Mean µs per round trip of each timed batch, in order.
        public var batchMicros: [Double]

        public var median: Double {
            let s = batchMicros.sorted()
            guard !s.isEmpty else { return 0 }
            return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
        }
        public var mean: Double { batchMicros.isEmpty ? 0 : batchMicros.reduce(0, +) / Double(batchMicros.count) }
        public var min: Double { batchMicros.min() ?? 0 }
        public var max: Double { batchMicros.max() ?? 0 }
    }

    public struct Result: Sendable, Equatable {
        public var backend: HostCapabilities.Backend
        public var summary: String
        /// SYSCALL → LSTAR stub → OUT → host → resume.
        public var syscall: Cost
        /// int3 → #BP through the guest IDT → stub → OUT → host (frame read) → resume.
        public var exception: Cost
        /// `.interrupted` exits seen (a host signal); each one is retried.
        public var interruptions: Int
    }

    /// Why a probe could not run: KVM itself, or the guest did not behave
    /// as its code says (which would be a detrec bug).
    public enum Failure: Error, CustomStringConvertible {
        case kvm(KVMError)
        case memory(GuestMemoryFault)
        case unexpected(String)

        public var description: String {
            switch self {
            case .kvm(let e): return "\(e)"
            case .memory(let f): return "exit probe: \(f)"
            case .unexpected(let what): return "exit probe: \(what)"
            }
        }
    }

    static let codeAddress: UInt64 = 0x40_0000
    static let stackTop: UInt64 = 0x60_0000
    static let markerNumber: UInt64 = 60

    /// Measures both kinds. `iterations` round trips per timed batch,
    /// `batches` timed batches, after one untimed warm-up batch.
    public static func measure(iterations: Int = 10_000, batches: Int = 5,
                               device: KVMDevice? = nil) throws(Failure) -> Result {
        guard iterations > 0, iterations <= Int(Int32.max), batches > 0 else {
            throw .unexpected("iterations and batches must be positive")
        }
        let dev: KVMDevice
        if let device {
            dev = device
        } else {
            do throws(KVMError) { dev = try KVMDevice() } catch { throw .kvm(error) }
        }
        let caps = HostCapabilities.probe(device: dev)
        var interruptions = 0
        let sys = try measure(kind: "syscall", body: [0xb8, 39, 0, 0, 0,      // mov eax, 39
                                                      0x0f, 0x05],            // syscall
                              iterations: iterations, batches: batches, device: dev,
                              interruptions: &interruptions) { exit, m in
            exit == .syscall && m.registers.rax == 39
        }
        let exc = try measure(kind: "exception (#BP)", body: [0xcc],          // int3
                              iterations: iterations, batches: batches, device: dev,
                              interruptions: &interruptions) { exit, _ in
            if case .exception(let e) = exit { return e.vector == GuestException.breakpoint }
            return false
        }
        return Result(backend: caps.backend, summary: caps.summary, syscall: sys, exception: exc,
                      interruptions: interruptions)
    }

    /// The guest:
    ///
    ///     top:  mov r12d, N
    ///     loop: <body>                 ; one exit
    ///           dec r12d
    ///           jnz loop
    ///           mov eax, 60
    ///           syscall                ; the batch marker
    ///           jmp top
    static func program(body: [UInt8], iterations: Int) -> [UInt8] {
        let n = UInt32(iterations)
        var code: [UInt8] = [0x41, 0xbc] + (0..<4).map { UInt8((n >> (8 * $0)) & 0xff) }  // mov r12d, imm32
        let loop = code.count
        code += body
        code += [0x41, 0xff, 0xcc]                      // dec r12d
        code += [0x0f, 0x85]                            // jnz rel32 (body length is free)
        let rel = Int32(loop - (code.count + 4))
        code += (0..<4).map { UInt8((UInt32(bitPattern: rel) >> (8 * UInt32($0))) & 0xff) }
        code += [0xb8, UInt8(markerNumber), 0, 0, 0]    // mov eax, 60
        code += [0x0f, 0x05]                            // syscall
        code += [0xe9]                                  // jmp rel32 top
        let back = Int32(0 - (code.count + 4))
        code += (0..<4).map { UInt8((UInt32(bitPattern: back) >> (8 * UInt32($0))) & 0xff) }
        return code
    }

    static func measure(kind: String, body: [UInt8], iterations: Int, batches: Int, device: KVMDevice,
                        interruptions: inout Int,
                        isLoopExit: (Exit, UserMachine) -> Bool) throws(Failure) -> Cost {
        let m: UserMachine
        do throws(KVMError) {
            m = try UserMachine(device: device, cpuid: try CPUIDTable.forRecording(device: device),
                                memorySize: 64 << 20)
        } catch { throw .kvm(error) }
        do throws(GuestMemoryFault) {
            try m.memory.map(codeAddress, pages: 1, protection: .rx)
            try m.memory.write(codeAddress, program(body: body, iterations: iterations), access: .kernel)
            try m.memory.map(stackTop - 0x1000, pages: 1, protection: .rw)
        } catch { throw .memory(error) }
        m.start(entry: codeAddress, stack: stackTop)

        func next() throws(Failure) -> Exit {
            while true {
                let exit: Exit
                do throws(KVMError) { exit = try m.run() } catch { throw .kvm(error) }
                if exit == .interrupted { interruptions += 1; continue }
                return exit
            }
        }

        var micros: [Double] = []
        for batch in 0...batches {            // batch 0 is the warm-up
            let start = now()
            for i in 0..<iterations {
                let exit = try next()
                guard isLoopExit(exit, m) else {
                    throw .unexpected("\(kind): exit \(i) of batch \(batch) was \(exit), rax \(m.registers.rax)")
                }
            }
            let elapsed = now() - start
            let marker = try next()
            guard marker == .syscall, m.registers.rax == markerNumber else {
                throw .unexpected("\(kind): batch \(batch) ended with \(marker), rax \(m.registers.rax), not the marker")
            }
            if batch > 0 { micros.append(elapsed * 1e6 / Double(iterations)) }
        }
        return Cost(kind: kind, exitsPerBatch: iterations, batchMicros: micros)
    }

    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }
}
