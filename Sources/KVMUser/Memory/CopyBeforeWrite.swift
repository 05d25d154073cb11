import CKVM
import Glibc

/// Fills the mirror lazily for a checkpoint that would otherwise copy many
/// pages (docs/preemption.md, "copy before write"): instead of copying
/// them, the checkpoint write-protects them with userfaultfd, and the first
/// write to one of them afterwards (the guest's, through KVM's fault path,
/// or detrec's own, or the host kernel's on the guest's behalf) waits until
/// a handler thread has copied the page's old contents into the mirror and
/// lifted the protection. A page never written again is never copied: the
/// first checkpoint after a program filled a large heap costs one
/// protection call instead of allocating and copying the heap.
///
/// `pending` names the pages protected and not yet copied. Such a page
/// holds in guest memory exactly what the mirror should hold (nothing can
/// write it without the fault), so the mirror's copy of it is stale only
/// until someone writes. The handler copies an aligned cluster of pending
/// pages around each fault, so a program rewriting its heap in order takes
/// one fault per cluster.
final class CopyBeforeWrite {
    /// Pages per cluster: what one fault copies at most.
    static let cluster = 16

    private let uffd: Int32
    /// A pipe: writing to `stop[1]` ends the handler.
    private let stop: (Int32, Int32)
    private let data: UnsafeMutableRawPointer
    private let mirror: UnsafeMutableRawPointer
    private let size: Int
    private let lock: UnsafeMutablePointer<pthread_mutex_t>
    private var pending: [UInt64]
    private var pendingCount = 0
    private var thread: pthread_t?
    /// Faults handled and pages copied by them (under `lock`).
    private var faultCount = 0
    private var copiedCount = 0
    /// Why protection failed or the handler stopped (under `lock`): no
    /// page is protected any more then, and `protect` refuses.
    private var failureReason: String?

    /// Why this host cannot write-protect guest memory, when it cannot.
    static func unavailable(data: UnsafeMutableRawPointer, size: Int) -> String? {
        let fd = ckvm_uffd_open()
        guard fd >= 0 else { return "userfaultfd: \(String(cString: strerror(-fd)))" }
        defer { close(fd) }
        let r = ckvm_uffd_register_wp(fd, data, UInt64(size))
        guard r == 0 else { return "UFFDIO_REGISTER (write-protect): \(String(cString: strerror(-r)))" }
        _ = ckvm_uffd_unregister(fd, data, UInt64(size))
        return nil
    }

    /// Registers the `size` bytes at `data` (the guest's data region) for
    /// write-protect faults, copying into `mirror` (a mapping of the same
    /// size). Nil, with the reason in `reason`, where the host has no
    /// userfaultfd write protection (checkpoints then copy eagerly).
    init?(data: UnsafeMutableRawPointer, mirror: UnsafeMutableRawPointer, size: Int, reason: inout String?) {
        let fd = ckvm_uffd_open()
        guard fd >= 0 else { reason = "userfaultfd: \(String(cString: strerror(-fd)))"; return nil }
        let r = ckvm_uffd_register_wp(fd, data, UInt64(size))
        guard r == 0 else {
            reason = "UFFDIO_REGISTER (write-protect): \(String(cString: strerror(-r)))"
            close(fd)
            return nil
        }
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { reason = "pipe: \(String(cString: strerror(errno)))"; close(fd); return nil }
        for f in fds { _ = fcntl(f, F_SETFD, FD_CLOEXEC) }  // not the guest's, not a child's
        uffd = fd
        stop = (fds[0], fds[1])
        self.data = data
        self.mirror = mirror
        self.size = size
        lock = .allocate(capacity: 1)
        pthread_mutex_init(lock, nil)
        pending = []
        var t = pthread_t()
        let started = pthread_create(&t, nil, { context in
            guard let context else { return nil }
            Unmanaged<CopyBeforeWrite>.fromOpaque(context).takeUnretainedValue().serve()
            return nil
        }, Unmanaged.passUnretained(self).toOpaque())
        guard started == 0 else {
            reason = "pthread_create: \(String(cString: strerror(started)))"
            _ = ckvm_uffd_unregister(fd, data, UInt64(size))
            close(fd); close(fds[0]); close(fds[1])
            pthread_mutex_destroy(lock); lock.deallocate()
            return nil
        }
        thread = t
    }

    /// Stops the handler and unregisters the region, which lifts every
    /// protection: pending pages are not copied (the mirror goes too; to
    /// keep it, `flushAll` first).
    deinit {
        var one: UInt8 = 1
        _ = write(stop.1, &one, 1)
        if let thread { pthread_join(thread, nil) }
        _ = ckvm_uffd_unregister(uffd, data, UInt64(size))
        close(uffd)
        close(stop.0)
        close(stop.1)
        pthread_mutex_destroy(lock)
        lock.deallocate()
    }

    var hasPending: Bool {
        pthread_mutex_lock(lock); defer { pthread_mutex_unlock(lock) }
        return pendingCount > 0
    }

    /// Write faults handled, and the pages they copied, for measurements.
    var counts: (faults: Int, pages: Int) {
        pthread_mutex_lock(lock); defer { pthread_mutex_unlock(lock) }
        return (faultCount, copiedCount)
    }

    var failure: String? {
        pthread_mutex_lock(lock); defer { pthread_mutex_unlock(lock) }
        return failureReason
    }

    private func fail(_ reason: String) {
        pthread_mutex_lock(lock)
        if failureReason == nil { failureReason = reason }
        pthread_mutex_unlock(lock)
    }

    @inline(__always) private func isPending(_ page: Int) -> Bool {
        let w = page >> 6
        return w < pending.count && pending[w] & (UInt64(1) << UInt64(page & 63)) != 0
    }

    @inline(__always) private func setPending(_ page: Int, _ on: Bool) {
        let w = page >> 6, bit = UInt64(1) << UInt64(page & 63)
        if w >= pending.count { pending.append(contentsOf: repeatElement(0, count: max(w + 1 - pending.count, pending.count))) }
        if on, pending[w] & bit == 0 { pending[w] |= bit; pendingCount += 1 }
        if !on, pending[w] & bit != 0 { pending[w] &= ~bit; pendingCount -= 1 }
    }

    /// Takes the given pages (sorted, each once) into the checkpoint
    /// without copying them: they are protected until first written. False
    /// when the kernel refused (the caller copies them instead; pages
    /// protected before the refusal are copied here and unprotected).
    func protect(_ pages: [UInt32]) -> Bool {
        pthread_mutex_lock(lock)
        guard failureReason == nil else { pthread_mutex_unlock(lock); return false }
        for page in pages { setPending(Int(page), true) }
        pthread_mutex_unlock(lock)
        var i = 0
        while i < pages.count {
            var j = i + 1
            while j < pages.count, pages[j] == pages[j - 1] &+ 1 { j += 1 }
            let r = ckvm_uffd_protect(uffd, data + Int(pages[i]) * 4096, UInt64(j - i) * 4096, 1)
            if r != 0 {
                fail("UFFDIO_WRITEPROTECT: \(String(cString: strerror(-r)))")
                flushAll()
                return false
            }
            i = j
        }
        return true
    }

    /// The page's contents will not be needed any more (it was given back
    /// to the host, or a new checkpoint copies it): it is no longer pending.
    /// Its protection, if any, is lifted at its next write fault.
    func forget(_ page: Int) {
        pthread_mutex_lock(lock)
        setPending(page, false)
        pthread_mutex_unlock(lock)
    }

    /// Pages about to be read from or written back from the mirror: those
    /// still pending are copied now (guest memory holds their checkpoint
    /// contents), so the mirror is current for all of them. Their
    /// protection stays until their next write fault.
    func materialize(_ pages: [Int]) {
        pthread_mutex_lock(lock)
        if pendingCount > 0 {
            for page in pages where isPending(page) {
                (mirror + page * 4096).copyMemory(from: data + page * 4096, byteCount: 4096)
                setPending(page, false)
            }
        }
        pthread_mutex_unlock(lock)
    }

    /// Waits for nothing, but orders the handler's copies before the
    /// caller's reads of the mirror.
    func settle() {
        pthread_mutex_lock(lock)
        pthread_mutex_unlock(lock)
    }

    /// Copies every pending page into the mirror and lifts all protection.
    func flushAll() {
        pthread_mutex_lock(lock)
        for (w, word) in pending.enumerated() where word != 0 {
            var v = word
            while v != 0 {
                let page = w * 64 + v.trailingZeroBitCount
                (mirror + page * 4096).copyMemory(from: data + page * 4096, byteCount: 4096)
                v &= v &- 1
            }
            pending[w] = 0
        }
        pendingCount = 0
        pthread_mutex_unlock(lock)
        _ = ckvm_uffd_protect(uffd, data, UInt64(size), 0)
    }

    /// The handler thread: for each write fault, copy the pending pages of
    /// its cluster into the mirror, then lift the cluster's protection
    /// (which wakes the writer).
    private func serve() {
        // Signals are for detrec's other threads (the vCPU's kick, SIGCHLD).
        var all = sigset_t()
        sigfillset(&all)
        pthread_sigmask(SIG_BLOCK, &all, nil)
        var address: UInt64 = 0
        while true {
            let r = ckvm_uffd_next_fault(uffd, stop.0, &address)
            if r == 0 { return }
            if r < 0 {
                // Nobody would answer the next fault: copy and unprotect everything.
                fail("userfaultfd read: \(String(cString: strerror(-r)))")
                flushAll()
                return
            }
            let base = UInt64(UInt(bitPattern: data))
            guard address >= base, address - base < UInt64(size) else { continue }
            let page = Int((address - base) / 4096)
            let first = page - page % CopyBeforeWrite.cluster
            let end = min(first + CopyBeforeWrite.cluster, size / 4096)
            pthread_mutex_lock(lock)
            faultCount += 1
            for p in first..<end where isPending(p) {
                (mirror + p * 4096).copyMemory(from: data + p * 4096, byteCount: 4096)
                setPending(p, false)
                copiedCount += 1
            }
            // Unprotected under the lock: a checkpoint protecting this
            // cluster again waits, so it cannot be undone by this call.
            let u = ckvm_uffd_protect(uffd, data + first * 4096, UInt64(end - first) * 4096, 0)
            if u != 0, failureReason == nil { failureReason = "UFFDIO_WRITEPROTECT (lift): \(String(cString: strerror(-u)))" }
            pthread_mutex_unlock(lock)
        }
    }
}
