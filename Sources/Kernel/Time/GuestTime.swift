import Glibc

/// A span of time in nanoseconds, saturating: guest timeouts go up to
/// TIME_T_MAX seconds, which no Int64 of nanoseconds holds, and Linux
/// treats such a timeout as "never" rather than failing. Arithmetic clamps
/// at `.forever` and at zero, so no conversion of a guest value can trap.
public struct Nanoseconds: Comparable, Hashable, Sendable, CustomStringConvertible {
    public var value: Int64

    public init(_ value: Int64) { self.value = max(0, value) }

    public static let zero = Nanoseconds(0)
    /// About 292 years: longer than any recording.
    public static let forever = Nanoseconds(Int64.max)

    public var isForever: Bool { value == Int64.max }

    /// A guest's struct timespec fields (already checked non-negative,
    /// nanoseconds below a second), saturated.
    public init(seconds: Int64, nanoseconds: Int64) {
        let (s, o1) = max(0, seconds).multipliedReportingOverflow(by: 1_000_000_000)
        let (t, o2) = s.addingReportingOverflow(max(0, nanoseconds))
        self.init(o1 || o2 ? Int64.max : t)
    }

    public static func seconds(_ s: Int64) -> Nanoseconds { Nanoseconds(seconds: s, nanoseconds: 0) }
    public static func milliseconds(_ ms: Int64) -> Nanoseconds {
        let (v, o) = max(0, ms).multipliedReportingOverflow(by: 1_000_000)
        return Nanoseconds(o ? Int64.max : v)
    }
    public static func microseconds(_ us: Int64) -> Nanoseconds {
        let (v, o) = max(0, us).multipliedReportingOverflow(by: 1_000)
        return Nanoseconds(o ? Int64.max : v)
    }

    public static func + (a: Nanoseconds, b: Nanoseconds) -> Nanoseconds {
        let (v, o) = a.value.addingReportingOverflow(b.value)
        return Nanoseconds(o ? Int64.max : v)
    }

    /// Never below zero.
    public static func - (a: Nanoseconds, b: Nanoseconds) -> Nanoseconds {
        a.isForever ? .forever : Nanoseconds(a.value - b.value)
    }

    public static func < (a: Nanoseconds, b: Nanoseconds) -> Bool { a.value < b.value }

    /// Whole seconds and the nanoseconds past them (a timespec).
    public var seconds: Int64 { value / 1_000_000_000 }
    public var subsecondNanoseconds: Int64 { value % 1_000_000_000 }

    /// A poll(2) timeout: milliseconds rounded up, -1 (no limit) when it
    /// does not fit an int, as a wait that long would never end anyway.
    public var pollMilliseconds: Int32 {
        let ms = value / 1_000_000 + (value % 1_000_000 == 0 ? 0 : 1)
        return ms > Int64(Int32.max) ? -1 : Int32(ms)
    }

    /// For code that still keeps time as Double seconds.
    public var doubleSeconds: Double { Double(value) / 1e9 }

    public var description: String { isForever ? "forever" : "\(value) ns" }
}

/// A point on the host's CLOCK_MONOTONIC (recording only: replay never
/// looks at the clock), in nanoseconds, saturating like `Nanoseconds`.
public struct MonotonicInstant: Comparable, Hashable, Sendable {
    public var nanoseconds: Int64

    public init(nanoseconds: Int64) { self.nanoseconds = nanoseconds }

    public static let never = MonotonicInstant(nanoseconds: Int64.max)
    public var isNever: Bool { nanoseconds == Int64.max }

    public static func now() -> MonotonicInstant {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return MonotonicInstant(nanoseconds: Int64(ts.tv_sec) &* 1_000_000_000 &+ Int64(ts.tv_nsec))
    }

    /// An absolute CLOCK_MONOTONIC timespec from the guest (FUTEX_WAIT_BITSET).
    public init(absolute: Nanoseconds) { nanoseconds = absolute.value }

    public static func + (a: MonotonicInstant, b: Nanoseconds) -> MonotonicInstant {
        let (v, o) = a.nanoseconds.addingReportingOverflow(b.value)
        return MonotonicInstant(nanoseconds: o ? Int64.max : v)
    }

    /// How long until `self` from `now`: zero once it has passed.
    public func remaining(from now: MonotonicInstant = .now()) -> Nanoseconds {
        if isNever { return .forever }
        let (v, o) = nanoseconds.subtractingReportingOverflow(now.nanoseconds)
        return Nanoseconds(o ? Int64.max : v)
    }

    public var hasPassed: Bool { self <= .now() }

    public static func < (a: MonotonicInstant, b: MonotonicInstant) -> Bool { a.nanoseconds < b.nanoseconds }

    /// For code that still keeps time as Double seconds (`Scheduler.monotonicNow`).
    public var doubleSeconds: Double { Double(nanoseconds) / 1e9 }
    public init(doubleSeconds s: Double) {
        if !(s < 9.2e9) { nanoseconds = Int64.max } else { nanoseconds = Int64(max(0, s) * 1e9) }
    }
}
