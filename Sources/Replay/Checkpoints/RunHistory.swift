import Kernel

/// What gdb's session ran forward since it last went back: each resume
/// from one stop to the next, with the breakpoints it had inserted. A
/// continue stops at the first arrival at any of them, so a stretch run
/// with a superset of today's breakpoints holds no hit of them inside;
/// only its ends can be hits. `bc` walks this back from the current
/// position first: when every stretch back to a hit is covered, that hit
/// is the answer with no replay at all (only the hand-over to go there);
/// else it knows there is no hit after the first stretch it cannot vouch
/// for, and the checkpoints are asked from there back.
struct RunHistory {
    struct Stretch {
        var from: ReplayPosition
        var to: ReplayPosition
        /// RIP at `to` (the thread on the vCPU).
        var rip: UInt64
        /// Breakpoints inserted while it ran; nil for a single step.
        var inserted: Set<UInt64>?
    }

    /// Where the history begins (the position gdb's session was adopted at) and its RIP.
    private(set) var origin: ReplayPosition?
    private(set) var originRIP: UInt64 = 0
    private(set) var stretches: [Stretch] = []
    /// Kept bounded: the oldest go first (the checkpoints cover them).
    static let limit = 4096

    /// Starts again at `position` (the session went back, or restarted).
    mutating func reset(at position: ReplayPosition, rip: UInt64) {
        origin = position
        originRIP = rip
        stretches.removeAll()
    }

    /// A resume from `from` ended at `to`. A stretch that does not start
    /// where the last one ended (an error, a stop that was not recorded)
    /// starts the history again.
    mutating func append(from: ReplayPosition, to: ReplayPosition, rip: UInt64, inserted: Set<UInt64>?) {
        let end = stretches.last?.to ?? origin
        if end != from {
            origin = nil
            stretches.removeAll()
            return
        }
        stretches.append(Stretch(from: from, to: to, rip: rip, inserted: inserted))
        if stretches.count > RunHistory.limit {
            let dropped = stretches.removeFirst()
            origin = dropped.to
            originRIP = dropped.rip
        }
    }

    /// What the history says about the last arrival at one of `wanted`
    /// before `here`: the hit, or how far back there is certainly none
    /// (nil: it says nothing).
    enum Answer {
        case hit(Sighting)
        case noneAfter(ReplayPosition)
    }

    func lastArrival(at wanted: Set<UInt64>, before here: ReplayPosition) -> Answer? {
        guard let origin, (stretches.last?.to ?? origin) == here, !wanted.isEmpty, !here.interrupted else { return nil }
        var i = stretches.count - 1
        while i >= 0 {
            let s = stretches[i]
            if let inserted = s.inserted, !wanted.isSubset(of: inserted) {
                return s.to == here ? nil : .noneAfter(s.to)
            }
            // Nothing inside it; its start is an arrival too.
            let (start, rip) = i > 0 ? (stretches[i - 1].to, stretches[i - 1].rip) : (origin, originRIP)
            if wanted.contains(rip), !start.interrupted {
                return .hit(Sighting(position: start, stop: .breakpoint(rip)))
            }
            i -= 1
        }
        return origin == here ? nil : .noneAfter(origin)
    }

    /// The history up to `position` (a stretch's end): what stays true
    /// after going back there.
    func prefix(to position: ReplayPosition) -> RunHistory? {
        guard let origin else { return nil }
        if origin == position { var h = RunHistory(); h.reset(at: origin, rip: originRIP); return h }
        guard let k = stretches.lastIndex(where: { $0.to == position }) else { return nil }
        var h = self
        h.stretches.removeSubrange((k + 1)...)
        return h
    }
}

extension WireWriter {
    mutating func put(_ h: RunHistory?) {
        guard let h, let origin = h.origin else { put(false); return }
        put(true)
        put(origin)
        put(h.originRIP)
        put(h.stretches.count)
        for s in h.stretches {
            put(s.from); put(s.to); put(s.rip)
            put(s.inserted != nil)
            let set = s.inserted ?? []
            put(set.count)
            for a in set.sorted() { put(a) }
        }
    }
}

extension WireReader {
    mutating func history() throws(WireError) -> RunHistory? {
        guard try bool() else { return nil }
        var h = RunHistory()
        h.reset(at: try position(), rip: try word())
        for _ in 0..<(try count(limit: RunHistory.limit + 1)) {
            let from = try position(), to = try position(), rip = try word()
            let stepped = !(try bool())
            var set = Set<UInt64>()
            for _ in 0..<(try count()) { set.insert(try word()) }
            h.append(from: from, to: to, rip: rip, inserted: stepped ? nil : set)
        }
        return h
    }
}
