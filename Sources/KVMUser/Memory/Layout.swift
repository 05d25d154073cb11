/// Where detrec puts the few pages the CPU itself needs (GDT, IDT, TSS with
/// its I/O bitmap, the entry stubs and the stack exceptions arrive on).
///
/// They live at the top of the user half, just below the last page, because
/// under PVM the entry stubs run with user privilege (see
/// shared/docs/platform.md), and the kernel half is not the guest's to use
/// there. Linux never maps anything this high (its stack ends lower), so the
/// guest's own layout is undisturbed.
public enum Layout {
    public static let systemBase: UInt64 = 0x7fff_ffff_0000
    static let gdt = systemBase + 0x0000
    static let idt = systemBase + 0x1000
    static let tss = systemBase + 0x2000     // TSS, then its I/O bitmap: 3 pages
    static let stubs = systemBase + 0x5000
    static let stackBottom = systemBase + 0x6000
    static let stackTop = systemBase + 0xa000 // TSS.rsp0: exception frames land below it
    /// Where the SYSCALL stub saves the guest's XSAVE state (EntryStubs).
    static let xsaveArea = systemBase + 0xa000
    static let systemPages = 11
    public static var systemEnd: UInt64 { systemBase + UInt64(systemPages) * 4096 }

    /// Guest-physical layout: page tables first, then everything else.
    static let tablesPhysical: UInt64 = 0
    static let tablesSize: UInt64 = 1 << 30
    static let dataPhysical: UInt64 = 1 << 30

    // Linux's selectors, so that a debugger shows the values it expects.
    static let kernelCS: UInt16 = 0x10
    static let kernelDS: UInt16 = 0x18
    static let user32CS: UInt16 = 0x23
    public static let userDS: UInt16 = 0x2b
    public static let userCS: UInt16 = 0x33
    static let tssSelector: UInt16 = 0x40

    /// Ports of the entry stubs' `OUT`: one for SYSCALL, one per exception vector.
    static let syscallPort: UInt16 = 0x10
    static let exceptionPortBase: UInt16 = 0x40
}
