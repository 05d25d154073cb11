/// What detrec itself changed in guest memory between two points, page by
/// page: a preemption window (Kernel/Scheduling/PreemptionWindow.swift)
/// keeps, for each syscall, the pages the syscall's handling wrote or gave
/// back, as they were when the guest resumed, so that a re-run from the
/// window's checkpoint can put them back at the same syscall instead of
/// running the handler again.
extension GuestMemory {
    /// Whether writes can be noted: KVM's dirty page log backs checkpoints.
    public var notesHostWrites: Bool { fullCopyReason == nil && dirty != nil }

    /// Starts (again) noting the pages detrec writes or gives back.
    public func startNotingHostWrites() {
        guard let dirty else { return }
        dirty.noted.removeAll(keepingCapacity: true)
        dirty.noting = true
    }

    public func stopNotingHostWrites() {
        dirty?.noting = false
        dirty?.noted.removeAll(keepingCapacity: true)
    }

    /// The frames noted since `startNotingHostWrites`, each once, with
    /// their bytes now (4096 each, in order); noting starts again.
    public func takeNotedFrames() -> (frames: [UInt64], bytes: [UInt8]) {
        guard let dirty, !dirty.noted.isEmpty else { return ([], []) }
        var pages = dirty.noted
        dirty.noted.removeAll(keepingCapacity: true)
        if pages.count > 1 {
            pages.sort()
            var unique: [UInt32] = []
            unique.reserveCapacity(pages.count)
            for p in pages where unique.last != p { unique.append(p) }
            pages = unique
        }
        var frames: [UInt64] = []
        frames.reserveCapacity(pages.count)
        var bytes = [UInt8](repeating: 0, count: pages.count * 4096)
        bytes.withUnsafeMutableBytes { out in
            for p in pages {
                let frame = data.guestBase + UInt64(p) * 4096
                guard data.contains(frame), let base = out.baseAddress else { continue }
                (base + frames.count * 4096).copyMemory(from: data.pointer(frame), byteCount: 4096)
                frames.append(frame)
            }
        }
        bytes.removeLast(bytes.count - frames.count * 4096)
        return (frames, bytes)
    }

    /// Puts back frames taken by `takeNotedFrames` (a host write: marked).
    public func putFrames(_ frames: [UInt64], _ bytes: [UInt8]) {
        guard bytes.count == frames.count * 4096 else { return }
        bytes.withUnsafeBytes { src in
            guard let base = src.baseAddress else { return }
            for (i, frame) in frames.enumerated() where data.contains(frame) {
                dirty?.mark(frame)
                data.pointer(frame).copyMemory(from: base + i * 4096, byteCount: 4096)
            }
        }
    }
}
