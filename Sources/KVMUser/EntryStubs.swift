/// The only guest code detrec supplies: one `OUT` per entry, so that every
/// SYSCALL and every exception exits to the host. The host then writes the
/// return state itself (RIP, RFLAGS, RSP, CS/SS) through the sync-regs area,
/// so nothing depends on `sysretq`/`iretq`, which fault under PVM.
///
/// Each stub is `out imm8, al` (E6 ib), which touches no register, followed
/// by `ud2` in case the host ever resumes a stub without moving RIP.
enum EntryStubs {
    static let stride: UInt64 = 8
    /// The SYSCALL entry (MSR_LSTAR) is slot 0; exception vector N is slot N+1.
    static var syscallEntry: UInt64 { Layout.stubs }
    static func exceptionStub(vector: Int) -> UInt64 { Layout.stubs + stride * UInt64(vector + 1) }

    static func code() -> [UInt8] {
        var code = [UInt8](repeating: 0xcc, count: 4096)
        func put(_ slot: Int, port: UInt16) {
            let at = slot * Int(stride)
            code[at] = 0xe6                 // out imm8, al
            code[at + 1] = UInt8(port)
            code[at + 2] = 0x0f             // ud2
            code[at + 3] = 0x0b
        }
        put(0, port: Layout.syscallPort)
        // Vectors past the exception range share one port: they can only be
        // reached by hardware that detrec never enables.
        for vector in 0..<256 {
            put(vector + 1, port: Layout.exceptionPortBase + UInt16(min(vector, 32)))
        }
        return code
    }

    static var ports: [UInt16] {
        [Layout.syscallPort] + (0...32).map { Layout.exceptionPortBase + UInt16($0) }
    }
}
