import Glibc

extension MemoryContext {
    /// futex_wake's loop over this memory's waiters, in the order they
    /// came: wakes those whose word `matches` and whose bitset meets
    /// `bitset` until `woken` reaches `count`. A PI waiter on a matching
    /// word ends it with true (the call is EINVAL; those woken before it
    /// stay woken, as in the kernel's pi_state/rt_waiter check).
    func wakeWaiters(count: Int, bitset: UInt32, woken: inout Int, matches: (UInt64) -> Bool) -> Bool {
        var refused = false
        for t in futexOrder where woken < count {
            guard var b = t.blocked, b.result == nil, let f = b.futex, matches(f.address) else { continue }
            if f.bitset == PriorityInheritanceFutexes.waiterBitset {
                refused = true
                break
            }
            guard f.bitset & bitset != 0 else { continue }
            b.result = 0
            t.blocked = b
            woken += 1
        }
        futexOrder.removeAll { $0.blocked?.result != nil || $0.blocked == nil }
        return refused
    }
}
