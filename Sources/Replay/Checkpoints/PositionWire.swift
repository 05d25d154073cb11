import Kernel
import KVMUser

/// Positions, stops and sightings as checkpoint messages carry them.
extension WireWriter {
    mutating func put(_ p: ReplayPosition) {
        put(p.event)
        put(p.breakpoint)
        put(p.hits)
        put(p.steps)
        put(p.exact)
        put(p.interrupted)
        put(p.path.count)
        for segment in p.path {
            switch segment {
            case .steps(let n):
                put(0)
                put(n)
            case .run(let stops):
                put(1)
                put(stops)
            case .watched(let stops, let pages, let faults):
                put(2)
                put(stops)
                put(pages)
                put(faults)
            case .toFault(let stops, let pages):
                put(3)
                put(stops)
                put(pages)
            }
        }
    }

    private mutating func put(_ stops: Set<UInt64>) {
        put(stops.count)
        for a in stops.sorted() { put(a) }
    }

    /// Watched pages with how each faults (page-protection watchpoints).
    private mutating func put(_ pages: [UInt64: DebugFault]) {
        put(pages.count)
        for (page, fault) in pages.sorted(by: { $0.key < $1.key }) {
            put(page)
            put(fault == .writes ? 0 : 1)
        }
    }

    /// The stops reverse execution lands on (others are never sent).
    mutating func put(_ s: StopReason) {
        switch s {
        case .breakpoint(let a): put(1); put(a)
        case .watch(let k, let a): put(2); put(k.rawValue); put(a)
        case .historyStart: put(3)
        case .start: put(4)
        default: put(0)
        }
    }

    mutating func put(_ s: Sighting?) {
        put(s != nil)
        if let s {
            put(s.position)
            put(s.stop)
        }
    }
}

extension WireReader {
    mutating func position() throws(WireError) -> ReplayPosition {
        var p = ReplayPosition(event: try int())
        p.breakpoint = try optionalWord()
        p.hits = try int()
        p.steps = try int()
        p.exact = try bool()
        p.interrupted = try bool()
        for _ in 0..<(try count()) {
            switch try int() {
            case 0: p.path.append(.steps(try int()))
            case 1: p.path.append(.run(try stops()))
            case 2: p.path.append(.watched(try stops(), try pages(), faults: try int()))
            case 3: p.path.append(.toFault(try stops(), try pages()))
            default: throw WireError("an unknown path segment")
            }
        }
        return p
    }

    private mutating func stops() throws(WireError) -> Set<UInt64> {
        var stops = Set<UInt64>()
        for _ in 0..<(try count()) { stops.insert(try word()) }
        return stops
    }

    private mutating func pages() throws(WireError) -> [UInt64: DebugFault] {
        var pages: [UInt64: DebugFault] = [:]
        for _ in 0..<(try count()) {
            let page = try word()
            switch try int() {
            case 0: pages[page] = .writes
            case 1: pages[page] = .accesses
            default: throw WireError("an unknown watched-page protection")
            }
        }
        return pages
    }

    mutating func stop() throws(WireError) -> StopReason {
        switch try int() {
        case 1: return .breakpoint(try word())
        case 2:
            guard let k = Watchpoints.Kind(rawValue: try int()) else { throw WireError("an unknown watchpoint kind") }
            return .watch(k, try word())
        case 3: return .historyStart
        case 4: return .start
        default: return .step
        }
    }

    mutating func sighting() throws(WireError) -> Sighting? {
        guard try bool() else { return nil }
        return Sighting(position: try position(), stop: try stop())
    }
}
