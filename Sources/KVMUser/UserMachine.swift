import CKVM
import Glibc
import Synchronization

/// How many times the vCPU has entered and left guest mode, and whether it
/// is in guest mode now: what a watchdog on another thread looks at.
public let guestEntries = Atomic<UInt64>(0)
public let inGuest = Atomic<Bool>(false)

/// A user-mode x86-64 machine on KVM with no guest kernel: one vCPU at CPL3,
/// page tables, GDT, IDT and TSS built by the host, and every SYSCALL and
/// exception turned into an `Exit`. Nothing here knows about Linux.
public final class UserMachine {
    public let device: KVMDevice
    public let capabilities: HostCapabilities
    public let cpuid: CPUIDTable
    /// Replaced with a fresh one when the machine is reused (`MachinePool`).
    public private(set) var memory: GuestMemory
    /// Replaced in a forked replayer (`rebuildAfterFork`): KVM's VM and
    /// vCPU are bound to the process that created them.
    var vm: VirtualMachine
    var vcpu: VCPU
    var tables: PageTables
    /// The vCPU's state as configured, before the guest first ran: what
    /// `reset` puts back (special registers, XSAVE area).
    var initialSregs = kvm_sregs()
    var initialXSAVE = kvm_xsave()

    /// The user-mode registers. Read after `run` returns; changes are
    /// written back on the next `run`.
    public var registers = Registers()
    public var fsBase: UInt64 {
        get { sregs.fs.base }
        set { sregs.fs.base = newValue; sregsDirty = true }
    }
    public var gsBase: UInt64 {
        get { sregs.gs.base }
        set { sregs.gs.base = newValue; sregsDirty = true }
    }
    var sregs = kvm_sregs()
    var sregsDirty = false
    /// The XSAVE area read just before a fork (`prepareForFork`).
    var xsaveBeforeFork: kvm_xsave?
    /// What detrec knows of the vCPU's XSAVE state without asking KVM.
    enum KnownXSAVE { case unknown, inArea, set([UInt8]) }
    var knownXSAVE = KnownXSAVE.unknown
    /// Whether the SYSCALL stub saves the XSAVE state (it fits its page).
    private(set) var stubSavesXSAVE = false
    private var syscallOut: UInt64 = EntryStubs.syscallOut(savesXSAVE: false)

    /// Guest-physical memory reserved for the guest's pages (not committed).
    public static let defaultMemorySize: UInt64 = 32 << 30
    /// The data region's memslot size: reading a slot's dirty log costs its
    /// size (a bitmap bit per page), and only the slots below the highest
    /// frame in use are read.
    static let dirtyLogSlotSize: UInt64 = 256 << 20
    /// The page tables' memslot size: the first holds a small program's
    /// tables; dropping cached translations re-adds only the slots in use.
    static let tableSlotSize: UInt64 = 32 << 20
    /// `DETREC_CHECKPOINTS=full-copy` turns the dirty page log off (to
    /// compare the two checkpoint methods).
    static let fullCopyRequested: Bool = getenv("DETREC_CHECKPOINTS").map { String(cString: $0) == "full-copy" } ?? false
    /// `DETREC_STUB_XSAVE=off` keeps the bare SYSCALL stub (EntryStubs), to compare.
    static let stubXSAVERequested: Bool = getenv("DETREC_STUB_XSAVE").map { String(cString: $0) != "off" } ?? true

    public init(device: KVMDevice, cpuid: CPUIDTable, memorySize: UInt64 = UserMachine.defaultMemorySize) throws(KVMError) {
        self.device = device
        capabilities = HostCapabilities.probe(device: device)
        guard capabilities.syncRegs else { throw .unsupported("KVM_CAP_SYNC_REGS") }
        guard capabilities.xcrs else { throw .unsupported("KVM_CAP_XCRS") }
        self.cpuid = cpuid
        stubSavesXSAVE = UserMachine.stubXSAVERequested && UserMachine.xsaveSize(cpuid) <= EntryStubs.xsaveRoom
        syscallOut = EntryStubs.syscallOut(savesXSAVE: stubSavesXSAVE)
        vm = try VirtualMachine(device: device)
        // Both regions are cut into memslots that KVM is given as they
        // come into use (PhysicalRegion), when KVM has that many (it
        // reports 0 when it does not say: then one slot each, whose log
        // costs more to read and whose set-up costs its whole size).
        let tableSlots = (Layout.tablesSize + UserMachine.tableSlotSize - 1) / UserMachine.tableSlotSize
        let slotsWanted = (memorySize + UserMachine.dirtyLogSlotSize - 1) / UserMachine.dirtyLogSlotSize
        let cut = UInt64(device.checkExtension(CKVM_CAP_NR_MEMSLOTS)) >= tableSlots + slotsWanted + 1
        let tableRegion = try PhysicalRegion(slot: 0, guestBase: Layout.tablesPhysical, size: Layout.tablesSize,
                                             slotSize: cut ? UserMachine.tableSlotSize : Layout.tablesSize)
        let dataRegion = try PhysicalRegion(slot: UInt32(cut ? tableSlots : 1), guestBase: Layout.dataPhysical, size: memorySize,
                                            slotSize: cut ? UserMachine.dirtyLogSlotSize : memorySize)
        try vm.add(tableRegion)
        // The dirty page log of the data region is armed at the first
        // checkpoint (DirtyPageLog); a KVM that refuses it then makes
        // checkpoints fall back to full copies.
        try vm.add(dataRegion)
        tables = try PageTables(region: tableRegion)
        memory = GuestMemory(tables: tables, data: dataRegion)
        if UserMachine.fullCopyRequested {
            memory.useFullCopyCheckpoints(reason: "DETREC_CHECKPOINTS=full-copy")
        } else {
            memory.dirty = DirtyPageLog(vm: vm, region: dataRegion)
        }
        vcpu = try VCPU(vm: vm, device: device)
        try installSystemPages()
        try configureVCPU()
        initialSregs = sregs
        try vcpu.ioctl("KVM_GET_XSAVE", CKVM_GET_XSAVE, &initialXSAVE)
        LiveMachines.add(self)
    }

    /// Makes the machine what `init` made: every guest page back to the
    /// host (they read as zero), fresh page tables and memory, KVM's cached
    /// translations and dirty log dropped, the system pages written again,
    /// and the vCPU's registers, special registers and XSAVE state as
    /// configured. The VM, its memslots and the vCPU stay: creating and
    /// destroying those is what a new process cost most (`MachinePool`).
    func reset() throws(KVMError) {
        let old = memory
        old.dropMirror()  // lifts its write protection before the pages go
        let tableRegion = tables.region, dataRegion = old.data
        tableRegion.discard(tableRegion.guestBase, bytes: tables.highestPage - tableRegion.guestBase)
        let used = old.highestFrame - dataRegion.guestBase
        dataRegion.discard(dataRegion.guestBase, bytes: used)
        tables = try PageTables(region: tableRegion)
        let fresh = GuestMemory(tables: tables, data: dataRegion)
        if let reason = old.fullCopyReason {
            fresh.useFullCopyCheckpoints(reason: reason)
        } else if let log = old.dirty {
            // The next program starts with the log off, as a new machine does.
            try log.disarm()
            fresh.dirty = DirtyPageLog(vm: vm, region: dataRegion)
        } else {
            fresh.useFullCopyCheckpoints(reason: "no dirty page log")
        }
        memory = fresh
        try vm.invalidateTranslations(in: tableRegion)
        try installSystemPages()
        registers = Registers()
        sregs = initialSregs
        try vcpu.ioctl("KVM_SET_SREGS", CKVM_SET_SREGS, &sregs)
        sregsDirty = false
        try vcpu.ioctl("KVM_SET_XSAVE", CKVM_SET_XSAVE, &initialXSAVE)
        knownXSAVE = .unknown
        var r = registers.kvm
        try vcpu.ioctl("KVM_SET_REGS", CKVM_SET_REGS, &r)
        vcpu.run.pointee.immediate_exit = 0
        interruptionDeferred = false
        memory.translationsChanged = false
    }

    /// GDT, IDT, TSS, the stubs and the exception stack, above the guest's
    /// address space (`GuestMemory.userLimit`): no guest mapping call or
    /// syscall buffer reaches them. Only the stubs are user pages (PVM runs
    /// them with user privilege, platform.md); the tables and the stack are
    /// supervisor pages, so a load or store by the program faults as one
    /// into the kernel half would. The CPU itself reads the tables and
    /// pushes exception frames with supervisor rights.
    private func installSystemPages() throws(KVMError) {
        do {
            try memory.map(Layout.systemBase, pages: Layout.systemPages, protection: .read, access: .system, user: false)
            let gdt = GlobalDescriptorTable.entries().flatMap { v in (0..<8).map { UInt8((v >> (8 * UInt64($0))) & 0xff) } }
            try memory.write(Layout.gdt, gdt, access: .system)
            try memory.write(Layout.idt, InterruptDescriptorTable.bytes(), access: .system)
            try memory.write(Layout.tss, TaskState.bytes(rsp0: Layout.stackTop, openPorts: EntryStubs.ports), access: .system)
            try memory.write(Layout.stubs, EntryStubs.code(savesXSAVE: stubSavesXSAVE), access: .system)
            // A user page: under PVM the stub runs with user privilege.
            memory.protect(Layout.xsaveArea, pages: 1, protection: .rw, access: .system, user: true)
            memory.protect(Layout.stubs, pages: 1, protection: .rx, access: .system, user: true)
            memory.protect(Layout.stackBottom, pages: Int((Layout.stackTop - Layout.stackBottom) / 4096), protection: .rw,
                           access: .system, user: UserMachine.userExceptionStack)
        } catch {
            throw .hostMemory(errno: ENOMEM)
        }
    }

    /// Whether the exception stack must be a user page for the CPU to push
    /// frames on it (see `installSystemPages`).
    static let userExceptionStack = false

    func configureVCPU() throws(KVMError) {
        try vcpu.setCPUID(cpuid)
        var s = kvm_sregs()
        try vcpu.ioctl("KVM_GET_SREGS", CKVM_GET_SREGS, &s)
        s.cs = Segment.userCode.kvm
        s.ss = Segment.userData.kvm
        s.ds = Segment.nullData().kvm
        s.es = Segment.nullData().kvm
        s.fs = Segment.nullData().kvm
        s.gs = Segment.nullData().kvm
        s.tr = Segment.tss.kvm
        var ldt = kvm_segment()
        ldt.unusable = 1
        s.ldt = ldt
        s.gdt.base = Layout.gdt
        s.gdt.limit = UInt16(GlobalDescriptorTable.entries().count * 8 - 1)
        s.idt.base = Layout.idt
        s.idt.limit = 256 * 16 - 1
        s.cr0 = 0x8005_0033          // PG AM WP NE ET MP PE, as Linux
        s.cr3 = tables.root
        s.cr4 = 0x20 | 0x200 | 0x400 | 0x10000 | 0x40000  // PAE OSFXSR OSXMMEXCPT FSGSBASE OSXSAVE
        s.efer = 0x1 | 0x100 | 0x400 | 0x800             // SCE LME LMA NXE
        try vcpu.ioctl("KVM_SET_SREGS", CKVM_SET_SREGS, &s)
        sregs = s

        try vcpu.setXCR0(cpuid.xcr0)
        var fpu = kvm_fpu()
        fpu.fcw = 0x37f
        fpu.mxcsr = 0x1f80
        try vcpu.ioctl("KVM_SET_FPU", CKVM_SET_FPU, &fpu)

        // SYSCALL: kernel CS/SS from STAR[47:32], user from STAR[63:48] (+16/+8).
        try vcpu.setMSR(0xc000_0081, UInt64(Layout.user32CS) << 48 | UInt64(Layout.kernelCS) << 32)
        try vcpu.setMSR(0xc000_0082, EntryStubs.syscallEntry)                 // LSTAR
        try vcpu.setMSR(0xc000_0083, EntryStubs.syscallEntry)                 // CSTAR (compat; unused)
        try vcpu.setMSR(0xc000_0084, 0x47700)                                  // SFMASK: TF DF IF IOPL AC NT, as Linux

        var r = registers.kvm
        try vcpu.ioctl("KVM_SET_REGS", CKVM_SET_REGS, &r)
        vcpu.run.pointee.kvm_valid_regs = UInt64(CKVM_SYNC_X86_REGS | CKVM_SYNC_X86_SREGS)
    }

    /// The FPU/SSE/AVX state in XSAVE layout (the first 4096 bytes of
    /// `struct kvm_xsave`), for signal frames and checkpoints: what the
    /// SYSCALL stub saved when the guest has not run since, else KVM's.
    public func extendedState() throws(KVMError) -> [UInt8] {
        switch knownXSAVE {
        case .set(let bytes):
            return bytes
        case .inArea:
            if let bytes = xsaveFromArea() {
                knownXSAVE = .set(bytes)
                return bytes
            }
        case .unknown:
            break
        }
        var x = kvm_xsave()
        try vcpu.ioctl("KVM_GET_XSAVE", CKVM_GET_XSAVE, &x)
        let bytes = withUnsafeBytes(of: &x.region) { Array($0) }
        knownXSAVE = .set(bytes)
        return bytes
    }

    public func setExtendedState(_ bytes: [UInt8]) throws(KVMError) {
        var x = kvm_xsave()
        let base = try extendedState()
        withUnsafeMutableBytes(of: &x.region) { region in
            base.withUnsafeBytes { b in
                guard let from = b.baseAddress else { return }
                region.baseAddress?.copyMemory(from: from, byteCount: min(region.count, b.count))
            }
            let n = min(region.count, bytes.count)
            bytes.withUnsafeBytes { b in
                guard let from = b.baseAddress, n > 0 else { return }
                region.baseAddress?.copyMemory(from: from, byteCount: n)
            }
        }
        knownXSAVE = .unknown
        try vcpu.ioctl("KVM_SET_XSAVE", CKVM_SET_XSAVE, &x)
        knownXSAVE = .set(withUnsafeBytes(of: &x.region) { Array($0) })
    }

    /// What the SYSCALL stub's XSAVE wrote, as KVM_SET_XSAVE takes it. The
    /// page is the program's to write too (the stub runs with user
    /// privilege under PVM), so what XSAVE does not write is not trusted:
    /// the header past XSTATE_BV (XCOMP_BV, reserved) and the stub's
    /// register slots are zeroed, XSTATE_BV keeps only XCR0's components.
    /// What else the program could leave there is register state of its
    /// own. Nil if the page is gone.
    private func xsaveFromArea() -> [UInt8]? {
        guard let frame = memory.frame(ofAny: Layout.xsaveArea), memory.data.contains(frame) else { return nil }
        var bytes = [UInt8](UnsafeRawBufferPointer(start: memory.data.pointer(frame), count: 4096))
        for i in 520..<576 { bytes[i] = 0 }
        for i in EntryStubs.xsaveRoom..<4096 { bytes[i] = 0 }
        for i in 0..<8 { bytes[512 + i] &= UInt8(truncatingIfNeeded: cpuid.xcr0 >> UInt64(8 * i)) }
        return bytes
    }

    /// The size of the XSAVE area for the guest's XCR0 (what a signal frame holds).
    public var extendedStateSize: Int { min(UserMachine.xsaveSize(cpuid), 4096) }

    /// The XSAVE area's size for the table's XCR0, uncapped.
    static func xsaveSize(_ cpuid: CPUIDTable) -> Int {
        var size = 576
        for leaf in cpuid.leaves where leaf.function == 0xd && leaf.index >= 2 && leaf.index < 64 {
            if (cpuid.xcr0 >> UInt64(leaf.index)) & 1 != 0 { size = max(size, Int(leaf.ebx) + Int(leaf.eax)) }
        }
        return size
    }

    /// Sets the user registers for the first instruction.
    public func start(entry: UInt64, stack: UInt64) {
        registers = Registers()
        registers.rip = entry
        registers.rsp = stack
        registers.rflags = 0x202
    }

    /// Runs user code until the next SYSCALL, exception or host signal.
    ///
    /// An interrupted run never leaves an exception in flight. Under PVM
    /// every exception the guest raises (an int3 detrec planted, a step's
    /// #DB, a fault) leaves the guest for the host kernel, which queues it
    /// for delivery through the guest IDT at the next entry. When the
    /// watchdog's signal lands in between, KVM_RUN returns EINTR with the
    /// exception still queued and RIP already past an int3 (site+1, inside
    /// the patched instruction). KVM keeps it across a register write and
    /// delivers it with whatever RIP the vCPU gets next (another thread's,
    /// a rolled-back one), and KVM_GET_VCPU_EVENTS does not report a queued
    /// #BP (a "soft" exception: the API has no instruction length for it).
    /// So such a run enters the guest again with its registers untouched:
    /// KVM delivers the exception, the stub exits, and the caller gets that
    /// exit, handled once as if no signal had come; the interruption
    /// follows at the next `run`, before the guest runs again.
    public func run() throws(KVMError) -> Exit {
        if interruptionDeferred {
            interruptionDeferred = false
            return .interrupted
        }
        var exit = try enter(writingRegisters: true)
        var attempts = 0
        while exit == .interrupted, attempts < UserMachine.deliveryAttempts, try exceptionInFlight() {
            attempts += 1
            UserMachine.exceptionsDeliveredAfterInterrupt += 1
            exit = try enter(writingRegisters: false)
            interruptionDeferred = exit != .interrupted
        }
        return exit
    }

    /// How often an interrupted run re-enters to deliver an exception in
    /// flight before it reports the interruption anyway (a signal storm).
    static let deliveryAttempts = 16
    /// A run was interrupted while an exception was in flight; `run` gave
    /// the exception's exit and owes the interruption.
    private var interruptionDeferred = false
    /// Interrupted runs that re-entered to deliver an exception in flight,
    /// in every machine of this detrec process (`PreemptionStats`). Only
    /// the vCPU thread runs machines.
    nonisolated(unsafe) public private(set) static var exceptionsDeliveredAfterInterrupt = 0
    /// Dirty page log harvests in every machine of this detrec process (`PreemptionStats`).
    public static var dirtyLogHarvests: Int { DirtyPageLog.harvests }

    /// Whether KVM may still hold an exception the guest raised, after an
    /// interrupted run. One it reports as injected or pending; or a #BP,
    /// which it does not report but whose vector it leaves in `nr`: then
    /// RIP is just past an int3 (detrec's patch, the guest's own 0xCC, or
    /// `int 3`; PVM, where the int3 trapped to the host) or on it (VMX and
    /// SVM, re-injecting one whose delivery took an exit), outside the
    /// entry stubs (a delivered one would have left RIP there). `nr` may
    /// also be left over from a #BP delivered before: then the guest only
    /// runs on to its next exit (at once when RIP is on an int3), which is
    /// harmless.
    private func exceptionInFlight() throws(KVMError) -> Bool {
        var events = kvm_vcpu_events()
        try vcpu.ioctl("KVM_GET_VCPU_EVENTS", CKVM_GET_VCPU_EVENTS, &events)
        if events.exception.injected != 0 || events.exception.pending != 0 { return true }
        let rip = registers.rip
        guard events.exception.nr == UInt8(GuestException.breakpoint), rip < Layout.systemBase, rip >= 2 else { return false }
        // The bytes as the CPU sees them: detrec's int3 where it patched.
        func byte(_ va: UInt64) -> UInt8? {
            if memory.patches[va] != nil { return 0xCC }
            return (try? memory.read(va, count: 1, access: .kernel))?.first
        }
        func int3(endingAt end: UInt64) -> Bool {
            let last = byte(end - 1)
            return last == 0xCC || (last == 0x03 && byte(end - 2) == 0xCD)
        }
        return int3(endingAt: rip) || byte(rip) == 0xCC || (byte(rip) == 0xCD && byte(rip + 1) == 0x03)
    }

    /// One KVM_RUN. `writingRegisters`: whether `registers` go to KVM
    /// first (always, but when re-entering to deliver an exception in
    /// flight, which a register write would move or drop).
    private func enter(writingRegisters: Bool) throws(KVMError) -> Exit {
        if memory.translationsChanged {
            try vm.invalidateTranslations(in: tables.region)
            memory.translationsChanged = false
        }
        memory.mayHoldTranslations = true
        let run = vcpu.run
        var dirty: UInt32 = 0
        if writingRegisters {
            run.pointee.s.regs.regs = registers.kvm
            dirty |= CKVM_SYNC_X86_REGS
        }
        if sregsDirty {
            run.pointee.s.regs.sregs = sregs
            dirty |= CKVM_SYNC_X86_SREGS
        }
        run.pointee.kvm_dirty_regs = UInt64(dirty)
        UserMachine.activeRun = run
        knownXSAVE = .unknown  // the guest may change it from here
        inGuest.store(true, ordering: .sequentiallyConsistent)
        let r = ckvm_ioctl_int(vcpu.fd, CKVM_RUN, 0)
        let err = errno
        inGuest.store(false, ordering: .sequentiallyConsistent)
        guestEntries.add(1, ordering: .relaxed)
        run.pointee.kvm_dirty_regs = 0
        sregsDirty = false
        registers = Registers(run.pointee.s.regs.regs)
        sregs = run.pointee.s.regs.sregs
        if r < 0 {
            run.pointee.immediate_exit = 0
            if err == EINTR || err == EAGAIN { return .interrupted }
            throw .ioctl(name: "KVM_RUN", errno: err)
        }
        switch Int32(run.pointee.exit_reason) {
        case KVM_EXIT_IO:
            let io = run.pointee.io
            guard io.direction == UInt8(KVM_EXIT_IO_OUT) else { break }
            if io.port == Layout.syscallPort, registers.rip &- syscallOut <= 2 {
                if stubSavesXSAVE { knownXSAVE = .inArea }
                return enterFromSyscall()
            }
            if io.port >= Layout.exceptionPortBase, io.port <= Layout.exceptionPortBase + 32 {
                let vector = Int(io.port - Layout.exceptionPortBase)
                if registers.rip &- EntryStubs.exceptionStub(vector: vector) <= 2 {
                    return try enterFromException(vector: vector)
                }
            }
            // A guest `out` of its own to a port the TSS lets through: Linux
            // would raise #GP.
            return .exception(GuestException(vector: GuestException.generalProtection, errorCode: 0, address: 0, rip: registers.rip))
        case KVM_EXIT_INTR:
            return .interrupted
        default:
            break
        }
        throw .unexpectedExit("reason \(run.pointee.exit_reason) at rip 0x\(String(registers.rip, radix: 16))")
    }

    /// The signal handler's way to kick the vCPU out of KVM_RUN.
    nonisolated(unsafe) static var activeRun: UnsafeMutablePointer<kvm_run>?

    /// Call from a signal handler: makes the current or next KVM_RUN return
    /// `.interrupted` promptly.
    public static func requestInterrupt() {
        activeRun?.pointee.immediate_exit = 1
    }

    /// SYSCALL left the user RIP in RCX and RFLAGS in R11; present the
    /// state as the guest will see it after the syscall returns.
    private func enterFromSyscall() -> Exit {
        registers.rip = registers.rcx
        registers.rflags = registers.r11
        restoreUserSegments()
        return .syscall
    }

    /// Reads the exception frame the CPU pushed on the TSS stack and puts
    /// the user state back as it was at the faulting instruction.
    private func enterFromException(vector: Int) throws(KVMError) -> Exit {
        var at = registers.rsp
        var errorCode: UInt64?
        // The CPU pushes the frame at the top of the exception stack; any
        // other RSP means the program jumped into the stub itself, which
        // for Linux is a jump into the kernel half.
        let frameSize: UInt64 = GuestException.hasErrorCode(vector) ? 48 : 40
        guard at == Layout.stackTop - frameSize else {
            restoreUserSegments()
            return .exception(GuestException(vector: GuestException.pageFault, errorCode: 0x14, address: registers.rip,
                                             rip: registers.rip))
        }
        do {
            if GuestException.hasErrorCode(vector) {
                errorCode = try memory.readValue(at, as: UInt64.self, access: .system)
                at += 8
            }
            let rip = try memory.readValue(at, as: UInt64.self, access: .system)
            let cs = try memory.readValue(at + 8, as: UInt64.self, access: .system)
            let rflags = try memory.readValue(at + 16, as: UInt64.self, access: .system)
            let rsp = try memory.readValue(at + 24, as: UInt64.self, access: .system)
            guard cs & 3 == 3 else {
                throw KVMError.unexpectedExit("exception \(vector) in detrec's entry code at rip 0x\(String(rip, radix: 16))")
            }
            registers.rip = rip
            registers.rflags = rflags
            registers.rsp = rsp
        } catch let e as KVMError {
            throw e
        } catch {
            throw .unexpectedExit("exception \(vector) with an unreadable frame")
        }
        restoreUserSegments()
        let address = vector == GuestException.pageFault ? sregs.cr2 : 0
        return .exception(GuestException(vector: vector, errorCode: errorCode, address: address, rip: registers.rip))
    }

    /// On VMX the stubs run at CPL0 with the kernel selectors loaded; put
    /// the user ones back. Under PVM they are still the user ones.
    private func restoreUserSegments() {
        if sregs.cs.selector != Layout.userCS || sregs.ss.selector != Layout.userDS {
            sregs.cs = Segment.userCode.kvm
            sregs.ss = Segment.userData.kvm
            sregsDirty = true
        }
    }
}
