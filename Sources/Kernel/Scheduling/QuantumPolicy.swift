/// How long one thread may compute while others may need the vCPU
/// (docs/preemption.md, "Policy"), kept per thread while recording.
///
/// A forced preemption keeps the thread's work only up to the counted
/// point (a few hundred hits at most for a loop whose state changes) and
/// throws the rest of the quantum away. A stretch of computation longer
/// than the quantum therefore finishes only if the quantum grows: it
/// doubles for each preemption in a row that threw work away, so such a
/// stretch throws away about as much as it keeps. The stretch is over as
/// soon as one of the thread's slices ends at an event of its own (a
/// syscall, an rdtsc): that slice's work was kept whole, and what the
/// thread computes next is a new stretch, which starts from the base
/// quantum again. So others wait at most about as long as the current
/// stretch has already run (and never more than `longest`), rather than
/// for the longest quantum the thread ever needed.
///
/// The one event that does not end the stretch is an rt_sigreturn back to
/// the instruction the thread was preempted at: a handler that ran there
/// (a timer's, a profiler's) returns into the interrupted stretch, which
/// still needs its long quantum. A handler that redirects the thread (Go's
/// asynchronous preemption makes it return into `asyncPreempt`, which
/// switches goroutines) starts a new stretch.
struct QuantumPolicy: Equatable {
    /// Preemptions in a row that threw work away, in the current stretch.
    private(set) var wasted = 0
    /// Where the last forced preemption stopped the thread.
    private(set) var preemptedAt: UInt64?

    /// The cap: a stretch longer than this between two events cannot
    /// finish while others keep wanting the vCPU (without a branch
    /// counter nothing better is known, docs/preemption.md).
    static let longest = 10.0

    /// The quantum for the thread's next slice, from the base quantum.
    func quantum(base: Double) -> Double {
        min(base * Double(1 << min(wasted, 16)), QuantumPolicy.longest)
    }

    /// A forced preemption; `threwAway` is false when the counted run
    /// stopped in the state the quantum had ended in (a spin: nothing lost).
    mutating func preempted(at rip: UInt64, threwAway: Bool) {
        preemptedAt = rip
        if threwAway { wasted += 1 }
    }

    /// One of the thread's slices ended at an event of its own, not at a
    /// preemption; `sigreturnTo`: the event was rt_sigreturn, which went
    /// back to this instruction.
    mutating func sliceEnded(sigreturnTo rip: UInt64?) {
        if let rip, rip == preemptedAt { return }
        wasted = 0
        preemptedAt = nil
    }
}
