/// The replay as gdb sees it: a session that can go backwards. The replay
/// is deterministic, so an earlier position is reached by replaying
/// forward to it: from a replay checkpoint (a fork of the replayer,
/// Checkpoints/TimelineCheckpoints.swift) when there is one before it,
/// else by a fresh replay from the start of the recording. Every
/// position is exact (`ReplayPosition`): an event count, then the n-th
/// arrival at an address within that slice, then single steps.
///
/// Reverse-continue replays from the start to the current position once,
/// noting every breakpoint hit (and, with watchpoints, the slices whose
/// start saw a different value), then a second time to the last of them;
/// a write found only to a slice is found to its instruction by
/// single-stepping that slice. See docs/gdb.md for the cost.
final class ReplayTimeline {
    private let make: () throws -> ReplaySession
    private(set) var session: ReplaySession
    /// Where a fresh replay stands before its first instruction.
    let start: ReplayPosition
    /// Whether sleeps are paced (`--skip-sleeps` off): only forward, for gdb.
    let skipSleeps: Bool
    /// Polls gdb for its interrupt byte, in every session.
    var interruptRequested: () -> Bool = { false } {
        didSet { session.interruptRequested = interruptRequested }
    }
    /// How many fresh replays reverse execution started (the benchmark and `monitor stats`).
    var replaysStarted = 0
    /// Checkpoint processes, when this replay has them (`detrec replay --gdb`): Checkpoints/.
    var processes: ReplayProcesses?
    /// The live checkpoints, oldest first.
    var checkpoints: [ReplayCheckpoint] = []
    /// In a process restored from a checkpoint: its session, at the
    /// checkpoint, which `fresh` hands out (once) instead of a new replay.
    var base: ReplaySession?
    /// Replay checkpoints restored (hand-overs and probes), for `monitor stats`.
    var restores = 0
    var nextCheckpointID = 1
    /// The gdb connection's socket, which checkpoints must not keep open.
    var connectionFD: Int32 = -1
    /// What gdb's session ran forward since it last went back (Checkpoints/RunHistory.swift).
    var history = RunHistory()
    /// The part of it a hand-over carries (true at the position gone to).
    var handOverHistory: RunHistory?
    /// Restored for `bs` at a slice's start: where the slice before starts.
    var sliceStartHint: Int?
    /// gdb's session state (GDBServer) for a hand-over.
    var exportServerState: () -> [UInt8] = { [] }

    init(skipSleeps: Bool, make: @escaping () throws -> ReplaySession) throws {
        self.make = make
        self.skipSleeps = skipSleeps
        session = try make()
        created = [session]
        session.world.inner.skipSleeps = skipSleeps
        start = session.position
        recordHistory(session)
    }

    /// gdb's session `s` starts a new history where it stands.
    private func recordHistory(_ s: ReplaySession) {
        history.reset(at: s.position, rip: s.machine.registers.rip)
        s.onResumed = { [unowned self, unowned s] from, inserted, _ in
            guard s === self.session else { return }
            self.history.append(from: from, to: s.position, rip: s.machine.registers.rip, inserted: inserted)
        }
    }

    /// A new replay at the start, with gdb's breakpoints and watchpoints,
    /// replaying as fast as it can.
    func fresh() throws -> ReplaySession {
        if let b = base {
            base = nil
            created.append(b)
            b.world.inner.skipSleeps = true
            b.world.inner.mute = true
            b.interruptRequested = interruptRequested
            return b
        }
        let s = try make()
        created.append(s)
        replaysStarted += 1
        s.world.inner.skipSleeps = true
        s.interruptRequested = interruptRequested
        s.world.inner.mute = true
        for a in session.breakpoints.addresses { _ = s.insertBreakpoint(a) }
        for w in session.watchpoints.watches { _ = s.watchpoints.insert(kind: w.kind, address: w.address, length: w.length) }
        return s
    }

    /// The session reached a position and becomes gdb's.
    func adopt(_ s: ReplaySession, at target: ReplayPosition, stop: StopReason) {
        base = nil
        scheduleCheckpoints(s)
        s.world.inner.skipSleeps = skipSleeps
        s.world.inner.mute = false
        // Following a path may have counted the position exactly.
        s.arrived(at: !target.exact && s.position.exact ? s.position : target, stop: stop)
        session = s
        recordHistory(s)
        for old in created where old !== s { old.discard() }
        created = [s]
    }

    /// A session at the start of the slice after `event` events: one of
    /// `reuse` (or gdb's session) rolled back to its checkpoint when it is
    /// in that slice, else a fresh replay run there (which takes a checkpoint).
    func sliceStart(_ event: Int, reuse: ReplaySession? = nil) throws -> ReplaySession {
        for candidate in [reuse, session].compactMap({ $0 }) where try candidate.rollBack(toEvent: event) {
            rollbacks += 1
            return candidate
        }
        let s = try fresh()
        if let stop = try s.runToEvent(event) {
            throw Unreachable(description: "the replay ended (\(stop)) before event \(event)")
        }
        try s.takeCheckpoint()
        return s
    }

    /// A session at `target`.
    func reproduce(_ target: ReplayPosition, reuse: ReplaySession? = nil) throws -> ReplaySession {
        let s = try sliceStart(target.event, reuse: reuse)
        if !target.exact {
            try s.follow(target.path, reporting: [])
            return s
        }
        if let a = target.breakpoint { try s.runToArrival(a, hits: target.hits) }
        if target.steps > 0 { try s.stepWithin(target.steps) }
        return s
    }

    /// Every session made since the last one gdb got, to be discarded then.
    var created: [ReplaySession] = []

    /// The session `previousInstruction` last used, whose checkpoint may serve again.
    var pending: ReplaySession?

    /// How many times going back restored a slice checkpoint instead of replaying from the start.
    var rollbacks = 0

    // MARK: what gdb asks for

    /// `run` / `monitor restart`: the replay from its start again.
    func restart() throws -> StopReason {
        let s = try fresh()
        adopt(s, at: start, stop: .start)
        return .start
    }

    /// `--goto EVENT`: the start of the slice after that many events.
    func go(toEvent event: Int) throws -> StopReason {
        let s = try fresh()
        if let stop = try s.runToEvent(event) {
            throw Unreachable(description: "the replay ends (\(stop)) before event \(event)")
        }
        adopt(s, at: ReplayPosition(event: event), stop: .step)
        return .step
    }

    /// `bc`: back to the last breakpoint hit or watched write before the
    /// current position, else to the start of the recording.
    func reverseContinue() throws -> StopReason {
        let here = try currentPosition()
        if let stop = try reverseContinueWithCheckpoints(from: here) { return stop }
        return try reverseContinue(from: here)
    }

    /// `bc` by replays from the start (and slice checkpoints).
    func reverseContinue(from here: ReplayPosition) throws -> StopReason {
        pending = nil
        defer { pending = nil }
        let winner = try lastSighting(before: here)
        guard let w = winner else {
            adopt(try reproduce(start), at: start, stop: .historyStart)
            return .historyStart
        }
        adopt(try reproduce(w.position, reuse: pending), at: w.position, stop: w.stop)
        return w.stop
    }

    /// `bs`: back one instruction.
    func reverseStep() throws -> StopReason {
        let here = try currentPosition()
        try reverseStepWithCheckpoints(from: here)
        return try reverseStep(from: here)
    }

    /// `bs` here, or (restored from a checkpoint) from `here`.
    func reverseStep(from here: ReplayPosition) throws -> StopReason {
        pending = nil
        defer { pending = nil }
        guard let previous = try previousInstruction(of: here) else {
            adopt(try reproduce(start), at: start, stop: .historyStart)
            return .historyStart
        }
        adopt(try reproduce(previous, reuse: pending), at: previous, stop: .step)
        return .step
    }

    func currentPosition() throws -> ReplayPosition {
        let p = session.position
        guard session.termination == nil else {
            throw Unreachable(description: "the replay has ended; `run` starts it again")
        }
        guard !p.interrupted else {
            throw Unreachable(description: "the replay stopped at gdb's interrupt, at an instruction no count describes: reverse execution cannot find it again (continue to a breakpoint first)")
        }
        return p
    }

    // MARK: searching backwards

    /// The last stop a forward run would have made before `here`: first
    /// within its slice (from the slice's checkpoint when there is one),
    /// then in the slices before it (a replay from the start).
    private func lastSighting(before here: ReplayPosition) throws -> Sighting? {
        var scan: ReplaySession?
        var last: Sighting?
        // The last slice whose watched bytes changed (found at the next slice's start).
        var writtenSlice: Int?
        let slice: ReplaySession
        if let c = session.checkpoint, c.event == here.event, try session.rollBack(toEvent: here.event) {
            rollbacks += 1
            slice = session
        } else {
            let s = try fresh()
            try scanEarlier(s, to: here.event, last: &last, writtenSlice: &writtenSlice)
            try s.takeCheckpoint()
            scan = s
            slice = s
            pending = s
        }
        if let f = try search(slice, upTo: here) { return f }
        if scan == nil {
            let s = try fresh()
            try scanEarlier(s, to: here.event, last: &last, writtenSlice: &writtenSlice)
        }
        if let k = writtenSlice, last.map({ $0.position.event <= k }) ?? true {
            // The last write is in slice k, after any breakpoint hit before it: step through it.
            let r = try sliceStart(k)
            pending = r
            var found: Sighting?
            _ = try r.stepToSliceEnd(observe: { found = $0 })
            if let f = found { return f }
        }
        return last
    }

    /// Replays from the start to the slice after `event` events, noting the
    /// last breakpoint hit and (with watchpoints) the last slice that wrote.
    func scanEarlier(_ s: ReplaySession, to event: Int, last: inout Sighting?, writtenSlice: inout Int?) throws {
        let watching = !s.watchpoints.isEmpty
        var sliceStart = s.eventIndex
        var seen: Sighting?
        var written: Int?
        if watching {
            // The watched pages protected: accesses found to their instruction on the way.
            if let stop = try s.scanWatching(to: event, observe: { seen = $0 }, syscallWrote: { written = $0 }) {
                throw Unreachable(description: "the replay ended (\(stop)) before the current position")
            }
            last = seen
            writtenSlice = written
            return
        }
        s.watchpoints.snapshot()
        if let stop = try s.runToEvent(event, observe: { seen = $0 }, eachSlice: watching ? {
            if s.watchpoints.changed() != nil { written = sliceStart }
            sliceStart = s.eventIndex
        } : nil) {
            throw Unreachable(description: "the replay ended (\(stop)) before the current position")
        }
        last = seen
        writtenSlice = written
    }

    /// Within the slice `s` starts (at its first instruction), the last
    /// stop before `here`.
    func search(_ s: ReplaySession, upTo here: ReplayPosition) throws -> Sighting? {
        if !here.exact {
            // Along gdb's own path in this slice (watched writes inside
            // its continues are not looked for).
            var found: Sighting?
            try s.follow(here.path, reporting: session.breakpoints.addresses, observe: { found = $0 })
            return found
        }
        let watching = !s.watchpoints.isEmpty
        // The watched pages protected: accesses are sightings at their instruction.
        if watching { s.watchpoints.arm() }
        defer { if watching { s.watchpoints.disarm() } }
        s.watchpoints.snapshot()
        var inSlice: Sighting?
        if let a = here.breakpoint {
            try s.runToArrival(a, hits: here.hits, observe: { inSlice = $0 })
            // Steps after it: the arrival itself is before here.
            if here.steps > 0, s.breakpoints.addresses.contains(a) {
                var anchor = here
                anchor.steps = 0
                inSlice = Sighting(position: anchor, stop: .breakpoint(a))
            }
        }
        let writtenBeforeAnchor = watching && here.breakpoint != nil && s.watchpoints.changed() != nil
        var afterAnchor: Sighting?
        if here.steps > 0 { try s.stepWithin(here.steps, observe: { afterAnchor = $0 }) }
        if let w = afterAnchor { return w }
        if writtenBeforeAnchor, let a = here.breakpoint {
            // A write between the slice's start and the anchor: step there.
            let r = try sliceStart(here.event, reuse: s)
            var found: Sighting?
            try r.stepUntil({ r.arrivalCount(a) == here.hits }, observe: { found = $0 })
            if let f = found { return f }
        }
        return inSlice
    }

    /// The position one instruction before `here`; nil at the start.
    private func previousInstruction(of here: ReplayPosition) throws -> ReplayPosition? {
        if here.steps > 0 {
            var p = here
            p.steps -= 1
            return p
        }
        if !here.exact {
            // Along the path; its last continue done by single steps instead.
            var path = here.path
            guard let last = path.popLast() else { return nil }
            var base = ReplayPosition(event: here.event)
            base.exact = path.isEmpty
            base.path = path
            switch last {
            case .steps(let n):
                if n > 1 { base.path.append(.steps(n - 1)); base.exact = false }
                return base
            case .run(let stops):
                let s = try reproduce(base)
                pending = s
                let steps = try s.stepUntil({ stops.contains(s.machine.registers.rip) })
                if steps > 1 { base.path.append(.steps(steps - 1)); base.exact = false }
                return base
            case .watched(let stops, let pages, let faults):
                // Before the last faulting instruction.
                if faults > 1 { base.path.append(.watched(stops, pages, faults: faults - 1)) }
                base.path.append(.toFault(stops, pages))
                base.exact = false
                return base
            case .toFault(_, let pages):
                let s = try reproduce(base)
                pending = s
                let steps = try s.stepsToFault(pages: pages)
                guard steps > 0 else { return try previousInstruction(of: base) }
                if steps > 1 { base.path.append(.steps(steps - 1)); base.exact = false }
                return base
            }
        }
        if let a = here.breakpoint {
            // From the arrival before (or the slice's start), step to this one.
            var base = ReplayPosition(event: here.event)
            if here.hits > 1 { base.breakpoint = a; base.hits = here.hits - 1 }
            let s = try reproduce(base)
            pending = s
            let steps = try s.stepUntil({ s.arrivalCount(a) == here.hits })
            base.steps = steps - 1
            return base
        }
        guard here.event > start.event else { return nil }
        // A slice's start: the last instruction of the slice before it.
        // Most slices end in one event: try the slice after one event
        // fewer, and look for it slice by slice only when that is this one.
        var previousStart = here.event - 1
        if let hint = sliceStartHint, hint < here.event {
            // Restored from a checkpoint, told where that slice starts.
            sliceStartHint = nil
            return try lastInstruction(ofSlice: hint)
        }
        if base != nil, let start = try previousSliceStartForHandOver(before: here) {
            try handOver(.reverseStep(here, sliceStart: start))
        }
        let attempt = try fresh()
        if try attempt.runToEvent(previousStart, exact: false) == nil, attempt.eventIndex == previousStart {
            try attempt.takeCheckpoint()
        } else {
            let s = try fresh()
            previousStart = s.eventIndex
            if let stop = try s.runToEvent(here.event, eachSlice: {
                if s.eventIndex < here.event { previousStart = s.eventIndex }
            }) {
                throw Unreachable(description: "the replay ended (\(stop)) before the current position")
            }
        }
        let r = try sliceStart(previousStart, reuse: attempt)
        pending = r
        let count = try r.stepToSliceEnd()
        var p = ReplayPosition(event: previousStart)
        p.steps = max(0, count - 1)
        return p
    }
}
