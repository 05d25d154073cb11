import KVMUser

/// Data watchpoints without debug registers (they never fire under PVM):
/// page protection on the watched pages (docs/gdb.md "Watchpoints").
///
/// While a continue runs with watchpoints, the pages holding watched bytes
/// are protected in the guest's page tables (`GuestMemory.setDebugProtection`):
/// write watchpoints clear the writable bit, read and access watchpoints the
/// present bit. The guest's own accesses to those pages fault to the stub,
/// which runs the faulting instruction with the page's own protection and
/// decides here whether it was a hit. Writes by the host (syscalls, signal
/// frames) fault nothing: the bytes are compared after each event instead.
final class Watchpoints {
    enum Kind: Int { case write = 2, read = 3, access = 4 }

    struct Watch: Equatable {
        var kind: Kind
        var address: UInt64
        var length: Int
        /// The bytes as they were when the replay last resumed or stopped.
        var last: [UInt8]?

        func overlaps(_ address: UInt64) -> Bool {
            address >= self.address && address - self.address < UInt64(length)
        }
    }

    /// A fault on a protected page taken while running one instruction.
    struct Access {
        var address: UInt64
        var write: Bool
        var fetch: Bool

        init(_ e: GuestException) {
            address = e.address
            write = (e.errorCode ?? 0) & 2 != 0
            fetch = (e.errorCode ?? 0) & 16 != 0
        }
    }

    let memory: GuestMemory
    private(set) var watches: [Watch] = []

    init(memory: GuestMemory) { self.memory = memory }

    var isEmpty: Bool { watches.isEmpty }

    private func read(_ w: Watch) -> [UInt8]? {
        try? memory.read(w.address, count: w.length, access: .kernel)
    }

    /// Z2, Z3, Z4: any length up to a page.
    func insert(kind: Kind, address: UInt64, length: Int) -> Bool {
        guard length > 0, length <= 4096, address < GuestMemory.userLimit,
              UInt64(length) <= GuestMemory.userLimit - address else { return false }
        if watches.contains(where: { $0.kind == kind && $0.address == address && $0.length == length }) { return true }
        var w = Watch(kind: kind, address: address, length: length)
        w.last = read(w)
        watches.append(w)
        return true
    }

    func remove(kind: Kind, address: UInt64, length: Int) {
        watches.removeAll { $0.kind == kind && $0.address == address && $0.length == length }
    }

    func removeAll() { watches.removeAll() }

    /// Takes the current bytes as the reference (when the replay resumes).
    func snapshot() {
        for i in watches.indices { watches[i].last = read(watches[i]) }
    }

    /// The first watch whose bytes changed since the snapshot; the
    /// reference moves on for all of them.
    func changed() -> Watch? {
        var hit: Watch?
        for i in watches.indices {
            let now = read(watches[i])
            if now != watches[i].last, hit == nil { hit = watches[i] }
            watches[i].last = now
        }
        return hit
    }

    /// After a syscall (a host write, which faults nothing): the first
    /// write or access watch whose bytes changed since the snapshot (a read
    /// watch is not hit by a change); the reference moves on for all.
    func changedByHost() -> Watch? {
        var hit: Watch?
        for i in watches.indices {
            let now = read(watches[i])
            if now != watches[i].last, hit == nil, watches[i].kind != .read { hit = watches[i] }
            watches[i].last = now
        }
        return hit
    }

    /// The protection each watched page needs: every access faults for a
    /// read or access watchpoint on it, else writes.
    var plan: [UInt64: DebugFault] {
        var pages: [UInt64: DebugFault] = [:]
        for w in watches {
            var page = w.address & ~4095
            let end = w.address + UInt64(w.length)
            while page < end {
                if w.kind != .write { pages[page] = .accesses } else if pages[page] == nil { pages[page] = .writes }
                page += 4096
            }
        }
        return pages
    }

    /// Protects the watched pages (while a watched continue runs).
    func arm() { memory.setDebugProtection(plan) }

    /// Back to the guest's own protection everywhere.
    func disarm() { memory.setDebugProtection([:]) }

    /// After one instruction ran with its faults `accesses`: the watch it
    /// hit, if any. A write watchpoint is hit when its bytes changed (gdb
    /// reports only changes); a read watchpoint when a read started in its
    /// range; an access watchpoint by either, or a write that started in it.
    /// Instruction fetches are not data accesses. Moves the reference on.
    func hit(after accesses: [Access]) -> Watch? {
        let changedNow = Set(watches.indices.filter { read(watches[$0]) != watches[$0].last })
        defer { snapshot() }
        for (i, w) in watches.enumerated() {
            let touched = accesses.filter { !$0.fetch && w.overlaps($0.address) }
            switch w.kind {
            case .write:
                if changedNow.contains(i) { return w }
            case .read:
                if touched.contains(where: { !$0.write }) { return w }
            case .access:
                if changedNow.contains(i) || !touched.isEmpty { return w }
            }
        }
        return nil
    }
}
