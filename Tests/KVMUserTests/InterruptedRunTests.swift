import Glibc
import Synchronization
import Testing
@testable import KVMUser

/// Host signals that land between an int3 and its delivery through the
/// guest IDT (`UserMachine.run`): the run that reports the interruption
/// has no exception left in flight, so the host may move RIP (a rollback)
/// and the next #BP is a new one, at its own int3.
@Suite(.serialized) struct InterruptedRunTests {
    static let code: UInt64 = 0x40_0000

    /// The guest loops over a patched two-byte instruction (`cc 90` over
    /// `66 90`, as detrec patches rdtsc and cpuid) and the host emulates
    /// it by moving RIP past it. A helper thread signals the vCPU thread
    /// over and over; at each interruption the host rolls RIP back to the
    /// patch, as a preemption rollback does. Every #BP must come from the
    /// int3 (RIP one past it), and no interrupted run may stop inside the
    /// patched instruction.
    @Test func noInterruptedRunLeavesABreakpointInFlight() throws {
        let loop = Self.code
        // loop: (66 90, patched to cc 90)  jmp loop
        let m = try testMachine(running: [0x66, 0x90, 0xeb, 0xfc])
        try m.memory.insertPatch(loop)

        let kicking = Kicking()
        defer { kicking.stop() }

        var breakpoints = 0, interruptions = 0
        var misplaced: [UInt64] = [], inside: [UInt64] = []
        while breakpoints < 20_000 {
            switch try m.run() {
            case .exception(let e) where e.vector == GuestException.breakpoint:
                breakpoints += 1
                if e.rip != loop + 1 { misplaced.append(e.rip) }
                m.registers.rip = loop + 2
            case .interrupted:
                interruptions += 1
                if m.registers.rip == loop + 1 { inside.append(m.registers.rip) }
                m.registers.rip = loop
            case let other:
                Issue.record("unexpected exit \(other)")
                breakpoints = .max
            }
        }
        kicking.stop()
        #expect(misplaced.isEmpty, "\(misplaced.count) #BPs delivered away from the int3 (\(interruptions) interruptions)")
        #expect(inside.isEmpty, "\(inside.count) interrupted runs stopped inside the patched instruction")
        print("InterruptedRunTests: \(breakpoints) #BPs, \(interruptions) interruptions, \(UserMachine.exceptionsDeliveredAfterInterrupt) with one in flight")
    }

    /// The same for a step's #DB: the guest single-steps (TF) through a
    /// run of one-byte nops, and at each interruption the host moves RIP
    /// to the second nop. The exit after that must be the #DB of that nop
    /// (RIP one past it), not a #DB left in flight and delivered with the
    /// new RIP.
    @Test func noInterruptedRunLeavesAStepInFlight() throws {
        let moved = Self.code + 1
        // loop: nop × 8; jmp loop
        let m = try testMachine(running: [UInt8](repeating: 0x90, count: 8) + [0xeb, 0xf6])
        m.registers.rflags |= 0x100
        let kicking = Kicking()
        defer { kicking.stop() }

        var steps = 0, interruptions = 0, justMoved = false
        var early: [UInt64] = []
        while steps < 20_000 {
            switch try m.run() {
            case .exception(let e) where e.vector == GuestException.debug:
                steps += 1
                if justMoved && e.rip != moved + 1 { early.append(e.rip) }
                justMoved = false
                m.registers.rflags |= 0x100
            case .interrupted:
                interruptions += 1
                m.registers.rip = moved
                justMoved = true
            case let other:
                Issue.record("unexpected exit \(other) at 0x\(String(m.registers.rip, radix: 16))")
                steps = .max
            }
        }
        kicking.stop()
        #expect(early.isEmpty, "\(early.count) steps ended elsewhere than past the instruction they stepped (\(interruptions) interruptions)")
        print("InterruptedRunTests: \(steps) steps, \(interruptions) interruptions, \(UserMachine.exceptionsDeliveredAfterInterrupt) with one in flight")
    }
}

/// A thread that signals the calling thread every 20 µs (SIGURG, with a
/// handler that does nothing: the signal only has to make KVM_RUN return)
/// until `stop`.
private final class Kicking {
    private let context: Kicker
    private var thread = pthread_t()
    private var previous = sigaction()
    private var mask = sigset_t()
    private var running = true

    init() {
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { _ in }
        sigemptyset(&action.sa_mask)
        sigaction(SIGURG, &action, &previous)
        var urgent = sigset_t()
        sigemptyset(&urgent)
        sigaddset(&urgent, SIGURG)
        pthread_sigmask(SIG_UNBLOCK, &urgent, &mask)
        context = Kicker(target: pthread_self())
        pthread_create(&thread, nil, { raw in
            guard let raw else { return nil }
            let context = Unmanaged<Kicker>.fromOpaque(raw).takeRetainedValue()
            while !context.stop.load(ordering: .relaxed) {
                pthread_kill(context.target, SIGURG)
                usleep(20)
            }
            return nil
        }, Unmanaged.passRetained(context).toOpaque())
    }

    func stop() {
        guard running else { return }
        running = false
        context.stop.store(true, ordering: .relaxed)
        pthread_join(thread, nil)
        pthread_sigmask(SIG_SETMASK, &mask, nil)
        sigaction(SIGURG, &previous, nil)
    }
}

/// What the signalling thread needs: whom to signal, and when to stop.
private final class Kicker: @unchecked Sendable {
    let target: pthread_t
    let stop = Atomic<Bool>(false)
    init(target: pthread_t) { self.target = target }
}
