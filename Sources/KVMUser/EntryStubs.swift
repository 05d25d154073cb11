/// The only guest code detrec supplies: one `OUT` per entry, so that every
/// SYSCALL and every exception exits to the host. The host then writes the
/// return state itself (RIP, RFLAGS, RSP, CS/SS) through the sync-regs area,
/// so nothing depends on `sysretq`/`iretq`, which fault under PVM.
///
/// Each exception stub is `out imm8, al` (E6 ib), which touches no
/// register, followed by `ud2` in case the host ever resumes a stub without
/// moving RIP.
///
/// The SYSCALL stub first saves the guest's XSAVE state into a system page
/// (`Layout.xsaveArea`; a user page, as the stubs are, since under PVM
/// the stub runs with user privilege: see `xsaveFromArea` for why a
/// program that writes it gains nothing),
/// restoring the two registers XSAVE needs. A checkpoint at the start of
/// every slice, a thread switch and a signal frame read that state after a
/// syscall; reading it there costs a copy, where KVM_GET_XSAVE costs a
/// vCPU ioctl (under PVM its vcpu_load/vcpu_put reads and writes host MSRs
/// and CR4: about a fifth of a recorded syscall when checkpoints are
/// taken). Without room for the state (AMX), the stub is the bare `out`.
enum EntryStubs {
    static let stride: UInt64 = 8
    /// Exception vector N is slot N+1 (slot 0 is unused).
    static func exceptionStub(vector: Int) -> UInt64 { Layout.stubs + stride * UInt64(vector + 1) }
    /// The SYSCALL entry (MSR_LSTAR), past the exception stubs.
    static var syscallEntry: UInt64 { Layout.stubs + syscallOffset }
    static let syscallOffset: UInt64 = 0xc00
    /// Bytes of the XSAVE area the stub may use: the page minus its two
    /// register slots.
    static let xsaveRoom = 4096 - 16
    /// Offset of the saved RAX and RDX in the area page.
    static let savedRAX = 4096 - 16, savedRDX = 4096 - 8

    /// Where the SYSCALL stub's `out` is (RIP is there or just past it at the exit).
    static func syscallOut(savesXSAVE: Bool) -> UInt64 {
        syscallEntry + UInt64(syscallCode(savesXSAVE: savesXSAVE).count - 4)
    }

    /// The SYSCALL stub: with `savesXSAVE`, RAX and RDX go to the area
    /// page, XSAVE64 of every enabled component (EDX:EAX all ones) to its
    /// start, RAX and RDX come back; then `out` and `ud2`. No flag changes.
    static func syscallCode(savesXSAVE: Bool) -> [UInt8] {
        var c: [UInt8] = []
        // RIP-relative operand: disp32 from the end of the instruction.
        func ripRelative(_ prefix: [UInt8], _ target: UInt64) {
            let end = syscallEntry + UInt64(c.count + prefix.count + 4)
            let disp = Int32(truncatingIfNeeded: Int64(bitPattern: target &- end))
            c += prefix
            withUnsafeBytes(of: disp.littleEndian) { c += $0 }
        }
        if savesXSAVE {
            ripRelative([0x48, 0x89, 0x05], Layout.xsaveArea + UInt64(savedRAX))  // mov [rip+d], rax
            ripRelative([0x48, 0x89, 0x15], Layout.xsaveArea + UInt64(savedRDX))  // mov [rip+d], rdx
            c += [0xb8, 0xff, 0xff, 0xff, 0xff]                                    // mov eax, -1
            c += [0xba, 0xff, 0xff, 0xff, 0xff]                                    // mov edx, -1
            ripRelative([0x48, 0x0f, 0xae, 0x25], Layout.xsaveArea)                // xsave64 [rip+d]
            ripRelative([0x48, 0x8b, 0x05], Layout.xsaveArea + UInt64(savedRAX))  // mov rax, [rip+d]
            ripRelative([0x48, 0x8b, 0x15], Layout.xsaveArea + UInt64(savedRDX))  // mov rdx, [rip+d]
        }
        c += [0xe6, UInt8(Layout.syscallPort), 0x0f, 0x0b]                        // out imm8, al; ud2
        return c
    }

    static func code(savesXSAVE: Bool) -> [UInt8] {
        var code = [UInt8](repeating: 0xcc, count: 4096)
        func put(_ slot: Int, port: UInt16) {
            let at = slot * Int(stride)
            code[at] = 0xe6                 // out imm8, al
            code[at + 1] = UInt8(port)
            code[at + 2] = 0x0f             // ud2
            code[at + 3] = 0x0b
        }
        let entry = Int(syscallOffset)
        for (i, byte) in syscallCode(savesXSAVE: savesXSAVE).enumerated() { code[entry + i] = byte }
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
