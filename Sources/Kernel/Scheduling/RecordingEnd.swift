/// When a recording ends (docs/architecture.md, "Processes").
///
/// The first process's end is the recording's result (detrec exits with
/// its status), but the recording goes on while other processes of the
/// first process's session live: a child that outlives its parent (`sh -c
/// 'cmd &'`) is recorded to its end, as `rr record -w` waits for all. Its
/// parent gone, an orphan is adopted by the nearest live subreaper among
/// its ancestors (PR_SET_CHILD_SUBREAPER), which gets its SIGCHLD and
/// waits for it, or else by init, outside the recording: getppid says 1
/// and it is reaped as soon as it ends, as Linux does.
///
/// Processes that left the session (setsid: how daemon(3) and service
/// managers detach a daemon) are not waited for: the recording ends with
/// the last process of the first process's session, and whatever is left
/// stops being run there, so a daemon that sleeps forever never keeps a
/// finished program's recording open. A process of the session that never
/// ends (`sh -c 'sleep 1000 &'`) keeps it open, as it would keep a pipe
/// from the program open natively; once the first process has ended, a
/// host signal whose default is to end a process (Ctrl-C, a kill of
/// detrec) ends the recording at once.
extension ProcessRunner {
    enum RootEnd {
        case exited(Int32)
        case killed(FatalSignal)
    }

    /// Whether a process the recording waits for lives on once `ending` ends.
    func othersKeepRecording(after ending: Process) -> Bool {
        let session = root.session
        return ending.family.processes.contains { $0 !== ending && $0.zombieStatus == nil && $0.session == session }
    }

    /// The last process the recording waited for has ended after the
    /// first: the trace ends with the first process's end, as it does when
    /// that one is last, and the run returns it.
    func endWithRoot() throws -> Termination {
        world.currentThread = root.pid
        switch rootEnd {
        case .killed(let f)?:
            try world.fatalSignal(f)
            return .killed(signal: f.signal)
        case .exited(let status)?:
            try world.processExit(status: status)
            return .exited(status)
        case nil:
            throw RunStopped("internal error: the recording ends before its first process")
        }
    }

    /// Who a host signal is for: SIGINT and SIGQUIT (what a terminal's
    /// Ctrl-C and Ctrl-\ send to its foreground process group) go to every
    /// live process of the first process's group, so that Ctrl-C reaches a
    /// compiler driver's children as well as the driver; any other goes to
    /// the first process alone, as a kill of detrec's pid would.
    func hostSignalTargets(_ signal: Int32) -> [Process] {
        guard signal == 2 || signal == 3 else { return [root] }
        let group = root.processGroup
        let members = root.family.processes.filter { $0 !== root && $0.zombieStatus == nil && $0.processGroup == group }
        return [root] + members
    }

    /// A signal whose default action ends the process (not one that is
    /// ignored or stops it by default).
    static func terminatesByDefault(_ signal: Int32) -> Bool {
        !SignalDelivery.ignoredByDefault.contains(signal) && !SignalDelivery.stopByDefault.contains(signal)
    }
}
