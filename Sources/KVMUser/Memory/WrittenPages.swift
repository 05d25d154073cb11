/// Which pages changed since a reader last looked, for readers other than
/// checkpoints: `SharedMemory.push` compares a shared view's pages with
/// what it last stored, and with this it looks only at pages written (by
/// the guest, through KVM's dirty page log, or by detrec) or released since
/// it last looked at them, not every page of postgres's 140 MiB of shared
/// buffers at every process switch.
public struct WrittenPages {
    let memory: GuestMemory
    let log: DirtyPageLog?

    /// Whether the page at `va` may differ from when this was last asked
    /// for it; the answer clears its mark. Always true without a log (the
    /// caller compares every page) and for a page without a frame.
    public func take(_ va: UInt64) -> Bool {
        guard let log, let frame = memory.frame(of: va) else { return true }
        return log.takeWritten(frame)
    }

    /// Whether every answer is true (no usable log): the caller looks at every page.
    public var knowsNothing: Bool { log == nil }
}

extension GuestMemory {
    /// Folds KVM's log in (arming it the first time, which counts every
    /// page the host has backed as written) and answers per page. Without
    /// a log (full-copy checkpoints, KVM refusing it) every page counts.
    public func writtenPages() -> WrittenPages {
        guard fullCopyReason == nil, let log = dirty, log.harvest(below: highestFrame) else {
            return WrittenPages(memory: self, log: nil)
        }
        return WrittenPages(memory: self, log: log)
    }
}
