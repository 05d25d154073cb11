/// A set of pending signals with the siginfo each will be delivered with,
/// as Linux's struct sigpending. A process has one shared set (kill,
/// timers) and each thread a private one (tkill, tgkill, SIGEV_THREAD_ID);
/// a thread dequeues from its own set first, as dequeue_signal does.
public struct PendingSignals {
    /// One bit per pending signal (bit N-1 for signal N).
    public var set: UInt64 = 0
    /// The siginfo of the first pending instance of each signal.
    var info: [Int32: [UInt8]] = [:]
    /// Real-time signals queue (Linux keeps every instance): the siginfo of
    /// each further instance of a pending one, oldest first.
    var queued: [Int32: [[UInt8]]] = [:]

    public init() {}

    /// How many signals are pending, each queued instance counted (SigQ).
    var instances: Int { self.set.nonzeroBitCount + queued.values.reduce(0) { $0 + $1.count } }

    /// Adds a signal: a second standard signal merges into the pending one
    /// (keeping the first siginfo), real-time signals queue.
    mutating func add(_ signal: Int32, info siginfo: [UInt8]) {
        if set & SignalState.bit(signal) != 0 {
            if signal >= 32 { queued[signal, default: []].append(siginfo) }
            return
        }
        set |= SignalState.bit(signal)
        info[signal] = siginfo
    }

    /// Takes the lowest pending signal in `mask` (the next queued instance
    /// of a real-time signal stays pending), with its siginfo.
    mutating func take(from mask: UInt64) -> (signal: Int32, info: [UInt8])? {
        let ready = set & mask
        guard ready != 0 else { return nil }
        let signal = Int32(ready.trailingZeroBitCount + 1)
        let first = info.removeValue(forKey: signal) ?? SignalDelivery.siginfo(signal: signal, code: Signals.SI_KERNEL)
        if var more = queued[signal], !more.isEmpty {
            info[signal] = more.removeFirst()
            queued[signal] = more.isEmpty ? nil : more
        } else {
            set &= ~SignalState.bit(signal)
        }
        return (signal, first)
    }

    /// Drops every pending instance of the signals in `mask` (a SIGCONT
    /// discards pending stop signals, and the other way round).
    mutating func discard(_ mask: UInt64) {
        for signal in Int32(1)...64 where mask & set & SignalState.bit(signal) != 0 {
            info[signal] = nil
            queued[signal] = nil
        }
        set &= ~mask
    }

    /// How many instances of `signal` are pending.
    func count(of signal: Int32) -> Int {
        set & SignalState.bit(signal) == 0 ? 0 : 1 + (queued[signal]?.count ?? 0)
    }
}
