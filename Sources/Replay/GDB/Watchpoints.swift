import KVMUser

/// Data watchpoints without debug registers (they never fire under PVM).
///
/// While any watchpoint is set, the replay runs one instruction at a time
/// (TF single-step, syscalls included) and compares the watched bytes after
/// each one: a change is a hit, reported after the writing instruction as
/// x86 debug registers would. Exact for writes, by the guest or by a syscall,
/// but slow (one vCPU exit per instruction, ~55 µs under PVM), so meant for
/// short runs. Read watchpoints cannot be seen this way: only write
/// watchpoints (`Z2`) are accepted.
final class Watchpoints {
    enum Kind: Int { case write = 2, read = 3, access = 4 }

    struct Watch: Equatable {
        var kind: Kind
        var address: UInt64
        var length: Int
        /// The bytes as they were when the replay last resumed or stopped.
        var last: [UInt8]?
    }

    let memory: GuestMemory
    private(set) var watches: [Watch] = []

    init(memory: GuestMemory) { self.memory = memory }

    var isEmpty: Bool { watches.isEmpty }

    private func read(_ w: Watch) -> [UInt8]? {
        try? memory.read(w.address, count: w.length, access: .kernel)
    }

    /// Z2 (Z3/Z4 are refused: reads cannot be observed).
    func insert(kind: Kind, address: UInt64, length: Int) -> Bool {
        guard kind == .write, length > 0, length <= 4096 else { return false }
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
}
