import Testing
@testable import Kernel

/// The preemption quantum (docs/preemption.md, "Policy"): it grows while a
/// stretch without events keeps being thrown away, and comes back to the
/// base as soon as the thread's own event keeps a slice whole.
@Suite struct QuantumPolicyTests {
    let base = 0.05
    let loop: UInt64 = 0x484f1a

    /// A stretch that never reaches an event doubles its quantum at each
    /// preemption that threw work away, up to the cap; spinning (nothing
    /// thrown away) does not grow it.
    @Test func aStretchThrownAwayDoublesUpToTheCap() {
        var p = QuantumPolicy()
        #expect(p.quantum(base: base) == base)
        p.preempted(at: loop, threwAway: false)
        #expect(p.quantum(base: base) == base)
        for k in 1...5 {
            p.preempted(at: loop, threwAway: true)
            #expect(p.quantum(base: base) == base * Double(1 << k))
        }
        for _ in 0..<40 { p.preempted(at: loop, threwAway: true) }
        #expect(p.quantum(base: base) == QuantumPolicy.longest)
    }

    /// Go's asynchronous preemption: the spinning thread, preempted again
    /// and again, takes SIGURG there, and its handler makes rt_sigreturn
    /// go to `asyncPreempt`, which switches to another goroutine without a
    /// syscall. That is a new stretch: the next loop starts from the base
    /// quantum, so the threads waiting for it (sysmon, the GC) wait 50 ms,
    /// not the 10 s the previous loop had grown to. (The policy before
    /// came back to the base only after a slice that ended at a syscall
    /// having used half its quantum, which neither this nor the short
    /// syscalls after a goroutine switch ever do.)
    @Test func aHandlerThatRedirectsTheThreadBringsTheBaseBack() {
        var p = QuantumPolicy()
        for _ in 0..<12 { p.preempted(at: loop, threwAway: true) }
        p.sliceEnded(sigreturnTo: 0x45f3a0)
        #expect(p.quantum(base: base) == base)
    }

    /// A short syscall of the thread's own keeps the slice before it whole:
    /// the stretch is over, whatever part of the quantum it used.
    @Test func anOwnSyscallBringsTheBaseBack() {
        var p = QuantumPolicy()
        for _ in 0..<12 { p.preempted(at: loop, threwAway: true) }
        p.sliceEnded(sigreturnTo: nil)
        #expect(p.quantum(base: base) == base)
    }

    /// A profiling timer's handler returns to where the computation was
    /// preempted each time: its quantum keeps growing, so a long
    /// computation still finishes while another thread and a timer both
    /// want the vCPU.
    @Test func aHandlerReturningIntoTheStretchKeepsItsQuantum() {
        var p = QuantumPolicy()
        for k in 1...8 {
            p.preempted(at: loop + UInt64(k), threwAway: true)
            p.sliceEnded(sigreturnTo: loop + UInt64(k))
            #expect(p.quantum(base: base) == min(base * Double(1 << k), QuantumPolicy.longest))
        }
    }
}
