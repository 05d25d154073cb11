import Glibc

/// A NUMA memory policy (mm/mempolicy.c's struct mempolicy) on the one node
/// the recording's machine has: node 0. The mode and flags the program
/// gave, the nodes it resolves to (always {0}) and, with
/// MPOL_F_STATIC_NODES or MPOL_F_RELATIVE_NODES, the nodes as given.
public struct MemoryPolicy: Equatable, Sendable {
    public var mode: Int32
    public var flags: Int32
    public var nodes: UInt64
    public var userNodes: [UInt64]
    public var homeNode: UInt64?
}

/// mbind, set_mempolicy, get_mempolicy, set_mempolicy_home_node,
/// migrate_pages and move_pages as a Linux with one memory node answers
/// them: modes, flags and node masks checked as mempolicy.c does (a node
/// other than 0 is not online: EINVAL), the thread's policy and each
/// mapping's kept so get_mempolicy reports them, and nothing ever moves.
enum MemoryPolicySyscalls {
    static let MPOL_DEFAULT: Int32 = 0, MPOL_PREFERRED: Int32 = 1, MPOL_BIND: Int32 = 2, MPOL_INTERLEAVE: Int32 = 3
    static let MPOL_LOCAL: Int32 = 4, MPOL_PREFERRED_MANY: Int32 = 5, MPOL_WEIGHTED_INTERLEAVE: Int32 = 6, MPOL_MAX: Int32 = 7
    static let STATIC_NODES: Int32 = 1 << 15, RELATIVE_NODES: Int32 = 1 << 14, NUMA_BALANCING: Int32 = 1 << 13
    static let modeFlags = STATIC_NODES | RELATIVE_NODES | NUMA_BALANCING
    static let MF_STRICT: UInt64 = 1, MF_MOVE: UInt64 = 2, MF_MOVE_ALL: UInt64 = 4
    static let F_NODE: UInt64 = 1, F_ADDR: UInt64 = 2, F_MEMS_ALLOWED: UInt64 = 4
    /// MAX_NUMNODES of x86-64 kernels (CONFIG_NODES_SHIFT 10); nr_node_ids is 1.
    static let maxNodes: UInt64 = 1024
    static let CAP_SYS_NICE = 23

    static func register(_ t: inout SyscallTable) {
        let note = "one memory node (0): Linux's checks, the policy kept for get_mempolicy, nothing moves"
        t.add(SYS.set_mempolicy, .emulated, note: note, setMempolicy)
        t.add(SYS.get_mempolicy, .emulated, note: note, getMempolicy)
        t.add(SYS.mbind, .emulated, note: note, mbind)
        t.add(SYS.set_mempolicy_home_node, .emulated, note: note, setHomeNode)
        t.add(SYS.migrate_pages, .emulated, note: "one memory node: nothing to migrate (0), after Linux's checks", migratePages)
        t.add(SYS.move_pages, .emulated, note: "one memory node: status is node 0 for a present page, -ENOENT otherwise", movePages)
    }

    /// sanitize_mpol_flags: the mode and its flags.
    static func sanitize(_ raw: Int32) throws(Errno) -> (mode: Int32, flags: Int32) {
        let flags = raw & modeFlags
        let mode = raw & ~modeFlags
        guard UInt32(bitPattern: mode) < UInt32(MPOL_MAX) else { throw .inval }
        if flags & STATIC_NODES != 0 && flags & RELATIVE_NODES != 0 { throw .inval }
        if flags & NUMA_BALANCING != 0 && mode != MPOL_BIND && mode != MPOL_PREFERRED_MANY { throw .inval }
        return (mode, flags)
    }

    /// get_nodes: the user's mask of maxnode - 1 bits, as words; bits past
    /// MAX_NUMNODES must be zero (EINVAL), more than a page of bits is EINVAL.
    static func nodes(_ c: SyscallCall, _ address: UInt64, _ maxnodeIn: UInt64) throws(Errno) -> [UInt64] {
        var maxnode = maxnodeIn &- 1
        guard maxnode != 0, address != 0 else { return [] }
        guard maxnode <= 4096 * 8 else { throw .inval }
        func word(_ i: UInt64) throws(Errno) -> UInt64 {
            try c.readValue(address + i * 8)
        }
        while maxnode > maxNodes {
            let bits = min(maxnode, 64)
            var t = try word((maxnode - 1) / 64)
            if bits < 64 { t &= (1 << bits) - 1 }
            if maxnode - bits >= maxNodes {
                maxnode -= bits
            } else {
                maxnode = maxNodes
                t &= ~((1 << (maxNodes % 64)) &- 1)
            }
            if t != 0 { throw .inval }
        }
        let words = (maxnode + 63) / 64
        var mask: [UInt64] = []
        for i in 0..<words { mask.append(try word(i)) }
        if maxnode % 64 != 0, !mask.isEmpty { mask[mask.count - 1] &= (1 << (maxnode % 64)) - 1 }
        return mask
    }

    static func isEmpty(_ mask: [UInt64]) -> Bool { mask.allSatisfy { $0 == 0 } }

    /// mpol_new and mpol_set_nodemask: nil for the default policy; node 0
    /// is the only one online, so the resolved mask is {0} or empty (EINVAL).
    static func policy(mode: Int32, flags: Int32, nodes: [UInt64]) throws(Errno) -> MemoryPolicy? {
        var mode = mode
        if mode == MPOL_DEFAULT {
            guard isEmpty(nodes) else { throw .inval }
            return nil
        }
        let relativeOrStatic = flags & (STATIC_NODES | RELATIVE_NODES) != 0
        if mode == MPOL_PREFERRED && isEmpty(nodes) {
            guard !relativeOrStatic else { throw .inval }
            mode = MPOL_LOCAL
        } else if mode == MPOL_LOCAL {
            guard isEmpty(nodes), !relativeOrStatic else { throw .inval }
        } else if isEmpty(nodes) {
            throw .inval
        }
        guard mode != MPOL_LOCAL else { return MemoryPolicy(mode: mode, flags: flags, nodes: 0, userNodes: [], homeNode: nil) }
        // Relative nodes fold onto the allowed ones ({0}); otherwise only node 0 counts.
        let resolved: UInt64 = flags & RELATIVE_NODES != 0 ? 1 : (nodes.first ?? 0) & 1
        guard resolved != 0 else { throw .inval }
        return MemoryPolicy(mode: mode, flags: flags, nodes: resolved, userNodes: relativeOrStatic ? nodes : [], homeNode: nil)
    }

    static func setMempolicy(_ c: SyscallCall) throws -> Int64 {
        let (mode, flags) = try sanitize(c.int(0))
        let mask = try nodes(c, c.arg(1), c.arg(2))
        c.process.current.memoryPolicy = try policy(mode: mode, flags: flags, nodes: mask)
        return 0
    }

    /// The mask get_mempolicy reports: the one given for static or relative
    /// nodes, else the resolved nodes (none for local and default).
    static func reported(_ p: MemoryPolicy?) -> [UInt64] {
        guard let p else { return [] }
        if p.flags & (STATIC_NODES | RELATIVE_NODES) != 0 { return p.userNodes }
        return p.mode == MPOL_LOCAL ? [] : [p.nodes]
    }

    static func getMempolicy(_ c: SyscallCall) throws -> Int64 {
        let policyOut = c.arg(0), maskOut = c.arg(1), maxnode = c.arg(2), addr = c.arg(3), flags = c.arg(4)
        if maskOut != 0 && maxnode < 1 { throw Errno.inval }
        guard flags & ~(F_NODE | F_ADDR | F_MEMS_ALLOWED) == 0 else { throw Errno.inval }
        var value: Int32 = 0
        var mask: [UInt64] = []
        if flags & F_MEMS_ALLOWED != 0 {
            guard flags & (F_NODE | F_ADDR) == 0 else { throw Errno.inval }
            mask = [1]
        } else {
            let pol: MemoryPolicy?
            if flags & F_ADDR != 0 {
                guard let m = c.process.space.mappings.first(where: { $0.start <= addr && addr < $0.end }) else { throw Errno.fault }
                pol = m.policy
                if flags & F_NODE != 0 {
                    // lookup_node: the page must be readable to be looked up.
                    guard m.protection.contains(.read) else { throw Errno.fault }
                }
            } else {
                guard addr == 0 else { throw Errno.inval }
                pol = c.process.current.memoryPolicy
            }
            if flags & F_NODE != 0 {
                // The node of the page (F_ADDR) or the next interleave node: 0.
                let interleaves = pol.map { $0.mode == MPOL_INTERLEAVE || $0.mode == MPOL_WEIGHTED_INTERLEAVE } ?? false
                guard flags & F_ADDR != 0 || interleaves else { throw Errno.inval }
                value = 0
            } else {
                value = (pol?.mode ?? MPOL_DEFAULT) | ((pol?.flags ?? 0) & modeFlags)
            }
            mask = reported(pol)
        }
        if policyOut != 0 { try c.writeValue(policyOut, value) }
        if maskOut != 0 {
            // copy_nodes_to_user: ALIGN(maxnode - 1, 64) / 8 bytes, zeros past nr_node_ids' word.
            let copy = ((maxnode - 1 + 63) / 64) * 8
            guard copy <= 4096 else { throw Errno.inval }
            var bytes = [UInt8](repeating: 0, count: Int(copy))
            for (i, w) in mask.prefix(Int(copy / 8)).enumerated() { bytes.replaceSubrange(i * 8..<i * 8 + 8, with: Bytes.u64(w)) }
            // Only the first word carries nodes (nr_node_ids is 1): the rest is cleared.
            if bytes.count > 8 { bytes.replaceSubrange(8..<bytes.count, with: [UInt8](repeating: 0, count: bytes.count - 8)) }
            if !bytes.isEmpty { try c.write(maskOut, bytes) }
        }
        return 0
    }

    /// The range a call names: page-aligned start (EINVAL), length rounded
    /// up to pages, no wrap (EINVAL); nil for an empty range.
    static func range(_ start: UInt64, _ length: UInt64) throws(Errno) -> (UInt64, UInt64)? {
        guard start & 4095 == 0 else { throw .inval }
        let (rounded, o1) = length.addingReportingOverflow(4095)
        let len = o1 ? 0 : rounded & ~4095
        if o1 { throw .inval }
        let (end, o2) = start.addingReportingOverflow(len)
        guard !o2 else { throw .inval }
        return end == start ? nil : (start, end)
    }

    static func mbind(_ c: SyscallCall) throws -> Int64 {
        let start = c.arg(0), length = c.arg(1)
        let (mode, modeFlags) = try sanitize(c.int(2))
        let mask = try nodes(c, c.arg(3), c.arg(4))
        var flags = UInt64(UInt32(truncatingIfNeeded: c.arg(5)))
        guard flags & ~(MF_STRICT | MF_MOVE | MF_MOVE_ALL) == 0 else { throw Errno.inval }
        if flags & MF_MOVE_ALL != 0 && !c.process.current.credentials.capable(CAP_SYS_NICE) { throw Errno.perm }
        if mode == MPOL_DEFAULT { flags &= ~MF_STRICT }
        guard let (low, high) = try range(start, length) else { return 0 }
        let new = try policy(mode: mode, flags: modeFlags, nodes: mask)
        // queue_pages_range: a hole is EFAULT unless the policy is the
        // default; a range with no mapping at all is EFAULT either way.
        let inside = c.process.space.mappings.filter { $0.end > low && $0.start < high }
        guard !inside.isEmpty else { throw Errno.fault }
        if new != nil {
            var at = low
            for m in inside {
                guard m.start <= at else { throw Errno.fault }
                at = m.end
            }
            guard at >= high else { throw Errno.fault }
        }
        c.process.space.update(low, high) { $0.policy = new }
        return 0
    }

    static func setHomeNode(_ c: SyscallCall) throws -> Int64 {
        let start = c.arg(0), length = c.arg(1), home = c.arg(2)
        guard c.arg(3) == 0 else { throw Errno.inval }
        guard home == 0 else { throw Errno.inval }   // only node 0 is online
        guard let (low, high) = try range(start, length) else { return 0 }
        // Mappings in order; one with a policy other than bind or
        // preferred-many ends the call with EOPNOTSUPP (those before keep theirs).
        for m in c.process.space.mappings where m.end > low && m.start < high {
            guard let old = m.policy else { continue }
            guard old.mode == MPOL_BIND || old.mode == MPOL_PREFERRED_MANY else { throw Errno(EOPNOTSUPP) }
            var new = old
            new.homeNode = home
            c.process.space.update(max(m.start, low), min(m.end, high)) { $0.policy = new }
        }
        return 0
    }

    /// The process a pid names for migrate_pages/move_pages (0: the caller),
    /// with PTRACE_MODE_READ_REALCREDS.
    static func target(_ c: SyscallCall, _ pid: Int32) throws(Errno) -> Process {
        if pid == 0 { return c.process }
        guard pid > 0, let (p, _) = c.process.family.find(pid), p.zombieStatus == nil else { throw .srch }
        guard CredentialsSyscalls.mayAccess(c.process, p) || p === c.process else { throw .perm }
        return p
    }

    static func migratePages(_ c: SyscallCall) throws -> Int64 {
        let old = try nodes(c, c.arg(2), c.arg(1))
        let new = try nodes(c, c.arg(3), c.arg(1))
        _ = old
        _ = try target(c, c.int(0))
        let nice = c.process.current.credentials.capable(CAP_SYS_NICE)
        // The target's allowed nodes are {0}; asking for others needs CAP_SYS_NICE.
        let outside = new.enumerated().contains { i, w in (i == 0 ? w & ~1 : w) != 0 }
        if outside && !nice { throw Errno.perm }
        guard (new.first ?? 0) & 1 != 0 else { throw Errno.inval }
        return 0
    }

    static func movePages(_ c: SyscallCall) throws -> Int64 {
        let count = c.arg(1), pages = c.arg(2), nodesArg = c.arg(3), status = c.arg(4)
        let flags = c.int(5)
        guard flags & ~Int32(MF_MOVE | MF_MOVE_ALL) == 0 else { throw Errno.inval }
        if UInt64(flags) & MF_MOVE_ALL != 0 && !c.process.current.credentials.capable(CAP_SYS_NICE) { throw Errno.perm }
        let p = try target(c, c.int(0))
        guard count <= 1 << 20 else { throw Errno.nomem }
        var addresses: [UInt64] = []
        for i in 0..<count { addresses.append(try c.readValue(pages + i * 8)) }
        var wanted: [Int32] = []
        if nodesArg != 0 {
            for i in 0..<count { wanted.append(try c.readValue(nodesArg + i * 4)) }
            // do_pages_move: a node that is not online is ENODEV; node 0 is the only one.
            if wanted.contains(where: { $0 != 0 }) { throw Errno(ENODEV) }
        }
        try c.checkWritable(status, count: Int(count) * 4)
        let memory = p.memory
        let mappings = p.space.mappings
        return try c.host { effects throws(Errno) -> Int64 in
            var out: [UInt8] = []
            for a in addresses {
                let page = a & ~4095
                let s: Int32
                if let m = mappings.first(where: { $0.start <= page && page < $0.end }) {
                    let resident = memory.residency(page, pages: 1).first ?? 0
                    // A page in the page tables is on node 0; moving to node 0 leaves it there.
                    _ = m
                    s = resident != 0 ? 0 : -ENOENT
                } else {
                    s = -EFAULT
                }
                out += Bytes.i32(s)
            }
            if !out.isEmpty { try effects.write(status, out) }
            return 0
        }
    }
}
