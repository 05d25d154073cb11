import Glibc
import Kernel

/// How often and how many automatic checkpoints a forward replay takes.
enum CheckpointPolicy {
    /// Events between automatic checkpoints: replaying this many costs
    /// well under a second here (about 50-150 µs an event, docs/gdb.md "Cost").
    static let interval: Int = getenv("DETREC_CHECKPOINT_INTERVAL").flatMap { Int(String(cString: $0)) }.map { max(1, $0) } ?? 1000
    /// Automatic checkpoints kept alive; older ones are thinned so that
    /// the spacing grows with the distance back from the replay.
    static let limit = 12
}

/// Reverse execution with replay checkpoints (docs/gdb.md "Checkpoints"):
/// going back starts from the nearest checkpoint before the event it
/// needs instead of the start of the recording.
///
/// - `bc`: the slice of the current position first (its slice checkpoint,
///   in this process), then each checkpoint from the latest back is asked
///   (a probe: a worker forked from it replays to the position reached so
///   far, with gdb's breakpoints, and answers the last hit); the first
///   answer wins, and a process restored from the latest checkpoint
///   before it goes there and takes the session over.
/// - `bs`, and any other position: a process restored from the latest
///   checkpoint before the wanted event finds it (`reverseStep(from:)`
///   with the checkpoint as its start) and takes over.
///
/// Anything the checkpoints do not cover (watchpoints, no checkpoint
/// early enough, a checkpoint that fails) goes the old way, by replays
/// from the start; the result is the same.
extension ReplayTimeline {
    func enableCheckpoints(_ p: ReplayProcesses) {
        processes = p
        p.answerProbe = { [unowned self] body in self.answerProbe(body) }
        scheduleCheckpoints(session)
        takeCheckpoint(user: false)
    }

    func scheduleCheckpoints(_ s: ReplaySession) {
        guard processes != nil else { return }
        s.onCheckpointEvent = { [unowned self] s in self.checkpointEvent(s) }
        s.checkpointAt = (s.eventIndex / CheckpointPolicy.interval + 1) * CheckpointPolicy.interval
    }

    private func checkpointEvent(_ s: ReplaySession) {
        defer { s.checkpointAt = (s.eventIndex / CheckpointPolicy.interval + 1) * CheckpointPolicy.interval }
        guard s === session, s.position == ReplayPosition(event: s.eventIndex),
              !checkpoints.contains(where: { $0.atSliceStart && $0.position.event == s.eventIndex }) else { return }
        takeCheckpoint(user: false)
    }

    /// Forks a checkpoint of the replay where it stands.
    @discardableResult
    func takeCheckpoint(user: Bool) -> ReplayCheckpoint? {
        guard let p = processes, p.mayCheckpoint, session.termination == nil else { return nil }
        let position = session.position
        do {
            let others = checkpoints.map(\.socket) + (connectionFD >= 0 ? [connectionFD] : [])
            let (pid, socket) = try p.fork(closingInChild: others)
            let c = ReplayCheckpoint(id: nextCheckpointID, pid: pid, socket: socket, position: position, user: user)
            nextCheckpointID += 1
            checkpoints.append(c)
            thin()
            return c
        } catch {
            GDBStub.say("detrec: no replay checkpoint at \(position): \(error)")
            return nil
        }
    }

    /// Keeps at most `CheckpointPolicy.limit` automatic checkpoints: those
    /// ahead of the replay go first, then the one whose removal leaves the
    /// smallest gap for its distance back (the first one, at the session's
    /// start, and the latest stay).
    private func thin() {
        guard let p = processes else { return }
        while checkpoints.filter({ !$0.user }).count > CheckpointPolicy.limit {
            let head = session.eventIndex
            let autos = checkpoints.filter { !$0.user }.sorted { $0.position.event < $1.position.event }
            var victim: ReplayCheckpoint?
            if let ahead = autos.last(where: { $0.position.event > head }) {
                victim = ahead
            } else {
                var best = Double.infinity
                for i in 1..<(autos.count - 1) {
                    let gap = Double(autos[i + 1].position.event - autos[i - 1].position.event)
                    let score = gap / Double(max(1, head - autos[i - 1].position.event))
                    if score < best { best = score; victim = autos[i] }
                }
            }
            guard let v = victim else { return }
            p.release(v)
            checkpoints.removeAll { $0.id == v.id }
        }
    }

    /// `monitor delete-checkpoint N`.
    func deleteCheckpoint(_ id: Int) -> Bool {
        guard let p = processes, let c = checkpoints.first(where: { $0.id == id }) else { return false }
        p.release(c)
        checkpoints.removeAll { $0.id == id }
        return true
    }

    /// The latest checkpoint at a slice's start at or before `event`.
    private func latestCheckpoint(atOrBefore event: Int) -> ReplayCheckpoint? {
        checkpoints.filter { $0.atSliceStart && $0.position.event <= event && $0.position.event >= start.event }
            .max { $0.position.event < $1.position.event }
    }

    // MARK: going back

    /// `bc` with checkpoints; nil when they cannot serve (the old way then).
    func reverseContinueWithCheckpoints(from here: ReplayPosition) throws -> StopReason? {
        guard let p = processes, session.watchpoints.isEmpty, !checkpoints.isEmpty else { return nil }
        var upTo = here
        // What gdb's own forward run saw first.
        switch history.lastArrival(at: session.breakpoints.addresses, before: here) {
        case .hit(let w)?:
            handOverHistory = history.prefix(to: w.position)
            defer { handOverHistory = nil }
            if let c = session.checkpoint, c.event == w.position.event, try session.rollBack(toEvent: w.position.event) {
                rollbacks += 1
                let kept = handOverHistory
                adopt(try reproduce(w.position, reuse: session), at: w.position, stop: w.stop)
                if let kept { history = kept }
                return w.stop
            }
            try handOver(.goTo(w.position, w.stop))
            return nil
        case .noneAfter(let p)?:
            upTo = p
        case nil:
            break
        }
        if upTo == here, let c = session.checkpoint, c.event == here.event, try session.rollBack(toEvent: here.event) {
            rollbacks += 1
            if let f = try search(session, upTo: here) {
                adopt(try reproduce(f.position, reuse: session), at: f.position, stop: f.stop)
                return f.stop
            }
            upTo = ReplayPosition(event: here.event)
        }
        let earlier = checkpoints.filter { $0.atSliceStart && $0.position.event <= upTo.event }
            .sorted { $0.position.event > $1.position.event }
        for c in earlier where upTo != ReplayPosition(event: c.position.event) {
            var job = WireWriter()
            job.put(upTo)
            job.put(session.breakpoints.addresses.count)
            for a in session.breakpoints.addresses.sorted() { job.put(a) }
            let answer: [UInt8]
            do {
                answer = try p.probe(c, job.bytes)
            } catch {
                GDBStub.say("detrec: checkpoint \(c.id) could not answer (\(error)); replaying from the start instead")
                return nil
            }
            restores += 1
            var r = WireReader(answer)
            let inSlice = try r.sighting(), last = try r.sighting()
            if let w = inSlice ?? last {
                try handOver(.goTo(w.position, w.stop))
            }
            upTo = ReplayPosition(event: c.position.event)
        }
        if upTo.event <= start.event {
            adopt(try reproduce(start), at: start, stop: .historyStart)
            return .historyStart
        }
        return try reverseContinue(from: upTo)
    }

    /// `bs` with checkpoints: returns (the old way follows) when this
    /// process can do it from its own slice checkpoint, or none is early enough.
    func reverseStepWithCheckpoints(from here: ReplayPosition) throws {
        guard processes != nil, !checkpoints.isEmpty else { return }
        let inSlice = here.steps > 0 || here.breakpoint != nil || !here.exact
        if inSlice, session.checkpoint?.event == here.event, session.checkpoint?.position == ReplayPosition(event: here.event) { return }
        guard here.event > start.event || inSlice else { return }
        try handOver(.reverseStep(here, sliceStart: nil), needing: inSlice ? here.event : here.event - 1)
    }

    /// Restored for `bs`: the last instruction of the slice after `event`
    /// events, found without leaving the slice when it ends in a `syscall`
    /// (every syscall is an event), so that the session can go back to it
    /// from its slice checkpoint; else by stepping through the slice and a
    /// hand-over to a process restored again.
    func lastInstruction(ofSlice event: Int) throws -> ReplayPosition {
        let r = try sliceStart(event)
        pending = r
        var p = ReplayPosition(event: event)
        func atSyscall() -> Bool {
            let rip = r.machine.registers.rip
            return (try? r.memory.read(rip, count: 2, access: .kernel)) == [0x0f, 0x05]
        }
        while !atSyscall() {
            if let stop = try r.stepOne() {
                throw Unreachable(description: "the replay stopped (\(stop)) in the slice after event \(event)")
            }
            if r.eventIndex != event {
                // The slice ended another way (a fault, a patched instruction): p is its last instruction.
                try handOver(.goTo(p, .step))
                throw Unreachable(description: "no checkpoint before event \(event)")
            }
            p.steps += 1
        }
        return p
    }

    /// Restored for `bs` at the start of `here`'s slice: finds where the
    /// slice before starts (from this checkpoint, slice by slice), to hand
    /// over to a process restored again that goes there. Nil when no
    /// checkpoint serves (the old way then).
    func previousSliceStartForHandOver(before here: ReplayPosition) throws -> Int? {
        guard let b = base, b.position == ReplayPosition(event: b.eventIndex), b.eventIndex < here.event else { return nil }
        let s = try fresh()
        var previousStart = s.eventIndex
        if let stop = try s.runToEvent(here.event, eachSlice: {
            if s.eventIndex < here.event { previousStart = s.eventIndex }
        }) {
            throw Unreachable(description: "the replay ended (\(stop)) before the current position")
        }
        return latestCheckpoint(atOrBefore: previousStart) == nil ? nil : previousStart
    }

    /// `monitor restart N`: the session continues in a process restored from checkpoint N, where it was taken.
    func restart(checkpoint id: Int) throws {
        guard let c = checkpoints.first(where: { $0.id == id }) else { throw Unreachable(description: "no checkpoint \(id) (monitor checkpoints lists them)") }
        try handOver(.stay(id), to: c)
    }

    // MARK: hand-over

    enum TakeOver {
        case goTo(ReplayPosition, StopReason)
        /// With where the slice before `here` starts, when known.
        case reverseStep(ReplayPosition, sliceStart: Int?)
        case stay(Int)
    }

    /// Hands the session to a process restored from the latest checkpoint
    /// before `event` (the job's own event by default); returns only when
    /// there is none.
    func handOver(_ job: TakeOver, needing event: Int? = nil) throws {
        let wanted: Int
        switch job {
        case .goTo(let p, _): wanted = p.event
        case .reverseStep(let p, let hint): wanted = hint ?? event ?? p.event
        case .stay: return
        }
        guard let c = latestCheckpoint(atOrBefore: wanted) else { return }
        try handOver(job, to: c)
    }

    private func handOver(_ job: TakeOver, to c: ReplayCheckpoint) throws -> Never {
        guard let p = processes else { throw Unreachable(description: "this replay has no checkpoints") }
        restores += 1
        var w = WireWriter()
        switch job {
        case .goTo(let position, let stop): w.put(1); w.put(position); w.put(stop)
        case .reverseStep(let here, let hint): w.put(2); w.put(here); w.put(hint.map { UInt64($0) })
        case .stay(let id): w.put(3); w.put(id)
        }
        w.put(replaysStarted); w.put(rollbacks); w.put(restores); w.put(nextCheckpointID)
        w.put(checkpoints.count)
        for k in checkpoints { w.put(k.id); w.put(Int(k.pid)); w.put(k.position); w.put(k.user) }
        w.put(session.breakpoints.addresses.count)
        for a in session.breakpoints.addresses.sorted() { w.put(a) }
        w.put(session.watchpoints.watches.count)
        for x in session.watchpoints.watches { w.put(x.kind.rawValue); w.put(x.address); w.put(x.length) }
        w.put(handOverHistory)
        w.bytes += exportServerState()
        try p.handOver(to: c, w.bytes, fds: [connectionFD] + checkpoints.map(\.socket))
    }

    /// In the restored process: the session state the message carries
    /// (up to the server's part, which `r` is left at).
    func takeOverJob(_ r: inout WireReader, sockets: [Int32]) throws -> TakeOver {
        let job: TakeOver
        switch try r.int() {
        case 1: job = .goTo(try r.position(), try r.stop())
        case 2: job = .reverseStep(try r.position(), sliceStart: try r.optionalWord().map { Int(clamping: $0) })
        case 3: job = .stay(try r.int())
        default: throw WireError("an unknown hand-over")
        }
        replaysStarted = try r.int(); rollbacks = try r.int(); restores = try r.int(); nextCheckpointID = try r.int()
        let n = try r.count(limit: 4096)
        guard sockets.count >= n else { throw WireError("\(n) checkpoints but \(sockets.count) sockets") }
        checkpoints = []
        for i in 0..<n {
            let id = try r.int(), pid = try r.int32(), position = try r.position(), user = try r.bool()
            checkpoints.append(ReplayCheckpoint(id: id, pid: pid, socket: sockets[i], position: position, user: user))
        }
        var addresses = Set<UInt64>()
        for _ in 0..<(try r.count()) { addresses.insert(try r.word()) }
        var watches: [Watchpoints.Watch] = []
        for _ in 0..<(try r.count()) {
            guard let k = Watchpoints.Kind(rawValue: try r.int()) else { throw WireError("an unknown watchpoint kind") }
            watches.append(Watchpoints.Watch(kind: k, address: try r.word(), length: try r.int()))
        }
        handOverHistory = try r.history()
        session.restored(breakpoints: addresses, watches: watches)
        session.interruptRequested = interruptRequested
        created = [session]
        return job
    }

    /// Does the job in the restored process: the stop to report (nil: the
    /// checkpoint's own position, `restart N`).
    func perform(_ job: TakeOver) throws -> StopReason? {
        switch job {
        case .goTo(let position, let stop):
            base = session
            // Checkpoints on the way too, so that the next step back near
            // the new position starts close by.
            scheduleCheckpoints(session)
            let kept = handOverHistory
            handOverHistory = nil
            adopt(try reproduce(position), at: position, stop: stop)
            if let kept, kept.origin != nil { history = kept }
            return stop
        case .reverseStep(let here, let hint):
            base = session
            scheduleCheckpoints(session)
            sliceStartHint = hint
            return try reverseStep(from: here)
        case .stay:
            adopt(session, at: session.position, stop: .step)
            return nil
        }
    }

    /// In a probe worker: the last breakpoint hit from the checkpoint to
    /// the position asked (within that position's slice, then before it).
    private func answerProbe(_ body: [UInt8]) -> [UInt8] {
        do {
            var r = WireReader(body)
            let upTo = try r.position()
            var addresses = Set<UInt64>()
            for _ in 0..<(try r.count()) { addresses.insert(try r.word()) }
            let s = session
            s.restored(breakpoints: addresses, watches: [])
            s.onCheckpointEvent = nil
            interruptRequested = { false }
            s.world.inner.mute = true
            s.world.inner.skipSleeps = true
            var last: Sighting?
            var written: Int?
            try scanEarlier(s, to: upTo.event, last: &last, writtenSlice: &written)
            try s.takeCheckpoint()
            let inSlice = try search(s, upTo: upTo)
            var w = WireWriter()
            w.put(inSlice)
            w.put(last)
            return ReplayProcesses.success(w.bytes)
        } catch {
            var w = WireWriter()
            w.put(false)
            w.put("\(error)")
            return w.bytes
        }
    }

    /// `monitor checkpoints`.
    var checkpointListing: String {
        guard processes != nil else { return "This replay has no checkpoints.\n" }
        var out = "Checkpoints (\(checkpoints.count) live, every \(CheckpointPolicy.interval) events at most \(CheckpointPolicy.limit) automatic ones):\n"
        for c in checkpoints.sorted(by: { $0.id < $1.id }) {
            out += "  \(c.id): \(c.position)\(c.user ? "" : " (automatic)")\n"
        }
        return out
    }
}
