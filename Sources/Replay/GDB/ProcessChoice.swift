import Kernel

/// Which recorded process gdb debugs (`detrec replay -p PID` / `-f PID`,
/// as rr's `--onprocess` and `--onfork`): the replay runs without gdb
/// until that process has exec'd (or, with `-f`, exists after its fork)
/// and is on the vCPU, then the session's inferior is that process.
public enum ProcessChoice: Sendable, Equatable {
    case exec(Int32)
    case fork(Int32)

    var pid: Int32 {
        switch self {
        case .exec(let p), .fork(let p): return p
        }
    }
}

extension ReplaySession {
    /// Replays, a slice at a time, to the start of the first slice of the
    /// chosen process after its exec (or fork) and makes it the inferior.
    /// The first process counts as exec'd from the start. A process the
    /// recording never reaches that way is a `RunStopped` at the end.
    func run(until choice: ProcessChoice) throws {
        let pid = choice.pid
        if case .exec = choice, process.pid == pid { return }
        // The process's address space when first seen: exec replaces it.
        var firstSeen: MemoryContext?
        while true {
            if let p = process.family.processes.first(where: { $0.pid == pid && $0.zombieStatus == nil }) {
                if firstSeen == nil { firstSeen = p.mm }
                let ready: Bool
                switch choice {
                case .fork: ready = true
                case .exec: ready = p.mm !== firstSeen
                }
                if ready, runner.process === p {
                    focus(on: p)
                    return
                }
            }
            if let stop = try runToEvent(eventIndex + 1, exact: false) {
                let what = firstSeen == nil ? "never starts" : choice == .exec(pid) ? "never execs" : "never runs"
                throw RunStopped("replay: process \(pid) \(what) in this recording (the replay ended: \(stop))", status: 2)
            }
        }
    }
}
