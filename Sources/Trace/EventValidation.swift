/// The values a recording can produce in each event field. The reader
/// refuses anything else as corruption (a fatal signal 0 is not a death
/// replay could reproduce), and the writer refuses to write it, so a trace
/// detrec writes always reads back. Rules in docs/trace-format.md.
enum EventValidation {
    /// One past the highest user address on x86-64 Linux (47-bit user space):
    /// no recorded write lands at or above it.
    static let userAddressLimit: UInt64 = 1 << 47
    static let atRandomSize = 16
    static let maxSignal: Int32 = 64

    /// Why `event` cannot be in a trace, or nil when it can.
    static func problem(_ event: Event) -> String? {
        guard event.tid > 0 else { return "thread id \(event.tid) is not a thread" }
        switch event {
        case let .processStart(_, atRandom):
            guard atRandom.count == atRandomSize else {
                return "AT_RANDOM of \(atRandom.count) bytes, not \(atRandomSize)"
            }
        case let .syscall(r):
            for w in r.writes {
                if let problem = problem(w) { return "syscall \(r.number): \(problem)" }
            }
        case let .exit(_, status):
            guard (0...255).contains(status) else { return "exit status \(status) is not 0...255" }
        case let .fatalSignal(_, signal, _, _, _):
            guard (1...maxSignal).contains(signal) else { return "fatal signal \(signal) is not 1...\(maxSignal)" }
        case let .signal(_, signal, _):
            guard isOutsideSignal(signal) else { return "signal \(signal) is neither a signal nor a timer's expiry" }
        case let .preempt(_, _, hits, _):
            guard hits >= 1 else { return "preempted at hit 0" }
        case .blocked, .dataCheck:
            break
        }
        return nil
    }

    /// A signal event's value: a signal number, a host signal's negated
    /// number, or a POSIX timer's `(id + 1) << 8 | signal`.
    static func isOutsideSignal(_ value: Int32) -> Bool {
        if (1...maxSignal).contains(value) || (-maxSignal ... -1).contains(value) { return true }
        return value > 0xff && (1...maxSignal).contains(value & 0xff)
    }

    /// A memory write either carries a file or random bytes for the kernel
    /// (at address 0, docs/trace-format.md "execve's event"), or lies wholly
    /// in user space.
    private static func problem(_ w: MemoryWrite) -> String? {
        switch w {
        case let .bytes(address, data):
            guard address != 0 else { return nil }
            return range(address, UInt64(data.count))
        case let .stored(address, length, _, offset):
            if address == 0 && length == 0 && offset == 0 { return nil }
            guard length > 0 else { return "an empty file write at 0x\(String(address, radix: 16))" }
            guard offset <= UInt64.max - length else { return "file range \(offset)+\(length) overflows" }
            return range(address, length)
        case let .storedRange(address, length, _, offset):
            guard length > 0 else { return "an empty file range at 0x\(String(address, radix: 16))" }
            guard offset <= UInt64.max - length else { return "file range \(offset)+\(length) overflows" }
            return range(address, length)
        }
    }

    private static func range(_ address: UInt64, _ length: UInt64) -> String? {
        guard address < userAddressLimit, length <= userAddressLimit - address else {
            return "a write of \(length) bytes at 0x\(String(address, radix: 16)) is outside user space"
        }
        return nil
    }
}
