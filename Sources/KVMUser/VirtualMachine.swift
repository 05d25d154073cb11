import CKVM
import Glibc

/// A KVM VM: its fd and guest-physical memory slots.
final class VirtualMachine {
    let fd: Int32
    private var regions: [PhysicalRegion] = []

    init(device: KVMDevice) throws(KVMError) {
        let fd = ckvm_ioctl_int(device.fd, CKVM_CREATE_VM, 0)
        guard fd >= 0 else { throw .ioctl(name: "KVM_CREATE_VM", errno: errno) }
        self.fd = fd
    }

    deinit { close(fd) }

    /// Registers the region's first memslot, and the others as frames in
    /// them are handed out (`PhysicalRegion.ensureRegistered`), without
    /// KVM's dirty page log: `setDirtyLogging` turns it on (for `dirtyLog`).
    func add(_ region: PhysicalRegion) throws(KVMError) {
        slotFlags[region.slot] = 0
        try setSlot(region, 0, present: true)
        region.registered(count: 1)
        keepRegistering(region)
        regions.append(region)
    }

    /// In a forked replayer: gives this (new) VM the region's memslots that
    /// the parent's VM had, over the same host memory (fork's copy).
    func readd(_ region: PhysicalRegion, logDirtyPages: Bool) throws(KVMError) {
        let flags = logDirtyPages ? UInt32(CKVM_MEM_LOG_DIRTY_PAGES) : 0
        slotFlags[region.slot] = flags
        for i in 0..<max(1, region.registeredSlots) { try setSlot(region, i, present: true, flags: flags) }
        keepRegistering(region)
        regions.append(region)
    }

    /// Slots registered later get the region's flags as they are then.
    private func keepRegistering(_ region: PhysicalRegion) {
        region.registerSlot = { [unowned self, unowned region] index in
            (try? self.setSlot(region, index, present: true, flags: self.slotFlags[region.slot] ?? 0)) != nil
        }
    }

    /// Turns KVM's dirty page log of the region's memslots on or off (a
    /// flags-only change: the memory and KVM's mappings stay). Turning it
    /// on write-protects what KVM has mapped, and the log starts empty;
    /// turning it off frees the bitmaps. While it is off KVM may map a
    /// fault's neighbouring pages with it (it prefetches only pages it need
    /// not log, and only where the host already backs them).
    func setDirtyLogging(_ region: PhysicalRegion, on: Bool) throws(KVMError) {
        let flags = on ? UInt32(CKVM_MEM_LOG_DIRTY_PAGES) : 0
        guard slotFlags[region.slot] != flags else { return }
        for i in 0..<max(1, region.registeredSlots) { try setSlot(region, i, present: true, flags: flags) }
        slotFlags[region.slot] = flags
    }

    /// Each region's memslot flags, by its first slot.
    private var slotFlags: [UInt32: UInt32] = [:]

    private func setSlot(_ region: PhysicalRegion, _ index: Int, present: Bool, flags: UInt32 = 0) throws(KVMError) {
        let (base, size) = region.slotRange(index)
        var m = kvm_userspace_memory_region(
            slot: region.slot + UInt32(index), flags: present ? flags : 0, guest_phys_addr: base,
            memory_size: present ? size : 0,
            userspace_addr: UInt64(UInt(bitPattern: region.host + Int(base - region.guestBase))))
        guard ckvm_ioctl(fd, CKVM_SET_USER_MEMORY_REGION, &m) == 0 else {
            throw .ioctl(name: "KVM_SET_USER_MEMORY_REGION", errno: errno)
        }
    }

    /// The guest writes to the region's `index`-th memslot since the last
    /// call, one bit per page (`bitmap` holds at least slotSize/4096 bits):
    /// 0, or -errno. Reading re-arms the log (KVM write-protects the pages
    /// again), so each call reports only what is new.
    func dirtyLog(_ region: PhysicalRegion, _ index: Int, into bitmap: UnsafeMutablePointer<UInt64>) -> Int32 {
        ckvm_get_dirty_log(fd, region.slot + UInt32(index), bitmap)
    }

    /// Makes KVM drop every translation it cached from the page tables in
    /// `region`, by removing its slot and adding it back.
    ///
    /// Why: detrec edits the guest's page tables from the host, behind KVM's
    /// back. With shadow paging (PVM) KVM write-protects guest page tables
    /// and only notices writes made by the guest, and with EPT the guest TLB
    /// keeps stale entries. Deleting a slot zaps the shadow pages and flushes
    /// the TLBs on both. Only needed when a translation was removed or
    /// narrowed: new or widened ones are picked up on the next fault.
    func invalidateTranslations(in region: PhysicalRegion) throws(KVMError) {
        let flags = slotFlags[region.slot] ?? 0
        for i in 0..<region.registeredSlots {
            try setSlot(region, i, present: false)
            try setSlot(region, i, present: true, flags: flags)
        }
    }
}

/// One vCPU and its shared `kvm_run` page. Registers travel through the
/// sync-regs area of that page, not through extra ioctls per exit.
final class VCPU {
    let fd: Int32
    let run: UnsafeMutablePointer<kvm_run>
    private let runSize: Int

    init(vm: VirtualMachine, device: KVMDevice) throws(KVMError) {
        let fd = ckvm_ioctl_int(vm.fd, CKVM_CREATE_VCPU, 0)
        guard fd >= 0 else { throw .ioctl(name: "KVM_CREATE_VCPU", errno: errno) }
        let size = try device.vcpuMmapSize()
        let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
        guard let p, p != MAP_FAILED else {
            close(fd)
            throw .ioctl(name: "mmap of the vCPU", errno: errno)
        }
        self.fd = fd
        runSize = size
        run = p.assumingMemoryBound(to: kvm_run.self)
    }

    deinit {
        munmap(run, runSize)
        close(fd)
    }

    func ioctl(_ name: String, _ request: UInt, _ arg: UnsafeMutableRawPointer) throws(KVMError) {
        guard ckvm_ioctl(fd, request, arg) >= 0 else { throw .ioctl(name: name, errno: errno) }
    }

    func setCPUID(_ table: CPUIDTable) throws(KVMError) {
        let entries = table.leaves.map(\.kvm)
        let r = entries.withUnsafeBufferPointer { ckvm_set_cpuid(fd, $0.baseAddress, Int32($0.count)) }
        guard r == 0 else { throw .ioctl(name: "KVM_SET_CPUID2", errno: -r) }
    }

    func setMSR(_ index: UInt32, _ value: UInt64) throws(KVMError) {
        let r = ckvm_set_msr(fd, index, value)
        guard r == 0 else { throw .ioctl(name: "KVM_SET_MSRS(0x\(String(index, radix: 16)))", errno: -r) }
    }

    func setXCR0(_ value: UInt64) throws(KVMError) {
        var x = kvm_xcrs()
        x.nr_xcrs = 1
        x.xcrs.0.xcr = 0
        x.xcrs.0.value = value
        try ioctl("KVM_SET_XCRS", CKVM_SET_XCRS, &x)
    }
}
