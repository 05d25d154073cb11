import CKVM

/// A segment as both the GDT and KVM see it. Each descriptor is built once
/// from this value and the KVM segment is derived from the same value, so
/// the two cannot disagree (as Firecracker's gdt.rs does).
struct Segment {
    var selector: UInt16
    var base: UInt64 = 0
    var limit: UInt32 = 0xffff_ffff
    var type: UInt8
    var dpl: UInt8
    var s: UInt8 = 1        // code/data (1) or system (0)
    var l: UInt8 = 0        // 64-bit code
    var db: UInt8 = 0
    var g: UInt8 = 1
    var present: UInt8 = 1

    static let kernelCode = Segment(selector: Layout.kernelCS, type: 0xb, dpl: 0, l: 1)
    static let kernelData = Segment(selector: Layout.kernelDS, type: 0x3, dpl: 0, db: 1)
    static let user32Code = Segment(selector: Layout.user32CS, type: 0xb, dpl: 3, db: 1)
    static let userData = Segment(selector: Layout.userDS, type: 0x3, dpl: 3, db: 1)
    static let userCode = Segment(selector: Layout.userCS, type: 0xb, dpl: 3, l: 1)
    /// DS/ES/FS/GS hold the null selector in 64-bit user mode, as on Linux;
    /// FS and GS still carry their bases.
    static func nullData(base: UInt64 = 0) -> Segment {
        Segment(selector: 0, base: base, type: 0x3, dpl: 3, db: 1)
    }
    /// The 64-bit TSS (busy), with room for the I/O bitmap.
    static let tss = Segment(selector: Layout.tssSelector, base: Layout.tss,
                             limit: UInt32(TaskState.size - 1), type: 0xb, dpl: 0, s: 0, g: 0)

    /// The 8-byte GDT descriptor (Intel SDM vol. 3, 3.4.5).
    var descriptor: UInt64 {
        let limitBits = UInt64(g == 1 ? limit >> 12 : limit)
        var d: UInt64 = limitBits & 0xffff
        d |= (base & 0xff_ffff) << 16
        d |= UInt64(type & 0xf) << 40
        d |= UInt64(s & 1) << 44
        d |= UInt64(dpl & 3) << 45
        d |= UInt64(present & 1) << 47
        d |= ((limitBits >> 16) & 0xf) << 48
        d |= UInt64(l & 1) << 53
        d |= UInt64(db & 1) << 54
        d |= UInt64(g & 1) << 55
        d |= ((base >> 24) & 0xff) << 56
        return d
    }

    var kvm: kvm_segment {
        var k = kvm_segment()
        k.base = base
        k.limit = limit
        k.selector = selector
        k.type = type
        k.present = present
        k.dpl = dpl
        k.db = db
        k.s = s
        k.l = l
        k.g = g
        k.unusable = present == 0 ? 1 : 0
        return k
    }
}

/// The GDT: Linux's layout (null, kernel code 32 placeholder, kernel code,
/// kernel data, user code 32, user data, user code, unused, TSS).
enum GlobalDescriptorTable {
    static func entries() -> [UInt64] {
        var gdt = [UInt64](repeating: 0, count: 10)
        gdt[2] = Segment.kernelCode.descriptor
        gdt[3] = Segment.kernelData.descriptor
        gdt[4] = Segment.user32Code.descriptor
        gdt[5] = Segment.userData.descriptor
        gdt[6] = Segment.userCode.descriptor
        // A 64-bit TSS descriptor takes two slots; the second holds base[63:32].
        gdt[8] = Segment.tss.descriptor
        gdt[9] = Layout.tss >> 32
        return gdt
    }
}

/// The 64-bit TSS (Intel SDM vol. 3, 8.7): only RSP0 and the I/O bitmap
/// matter. The bitmap lets the entry stubs' `OUT` through without I/O
/// privilege (PVM runs them with user privilege); all other ports stay closed.
enum TaskState {
    static let bitmapOffset = 0x68
    static let bitmapBytes = 65536 / 8
    static let size = bitmapOffset + bitmapBytes + 1   // +1: the terminating 0xff byte

    static func bytes(rsp0: UInt64, openPorts: [UInt16]) -> [UInt8] {
        var tss = [UInt8](repeating: 0, count: size)
        put64(&tss, 4, rsp0)
        tss[0x66] = UInt8(bitmapOffset & 0xff)
        tss[0x67] = UInt8(bitmapOffset >> 8)
        for i in bitmapOffset..<size { tss[i] = 0xff }
        for port in openPorts {
            tss[bitmapOffset + Int(port / 8)] &= ~(UInt8(1) << (port % 8))
        }
        return tss
    }

    private static func put64(_ b: inout [UInt8], _ at: Int, _ v: UInt64) {
        for i in 0..<8 { b[at + i] = UInt8((v >> (8 * UInt64(i))) & 0xff) }
    }
}

/// The IDT: every vector goes to its own stub. Only #BP and #OF are
/// reachable with `int3`/`into` from user code (DPL 3); an `int N` to any
/// other vector raises #GP, as on Linux.
enum InterruptDescriptorTable {
    static func bytes() -> [UInt8] {
        var idt = [UInt8](repeating: 0, count: 256 * 16)
        for vector in 0..<256 {
            let target = EntryStubs.exceptionStub(vector: vector)
            let dpl: UInt64 = (vector == 3 || vector == 4) ? 3 : 0
            var low: UInt64 = target & 0xffff
            low |= UInt64(Layout.kernelCS) << 16
            low |= (0xe as UInt64) << 40          // 64-bit interrupt gate
            low |= dpl << 45
            low |= 1 << 47                        // present
            low |= ((target >> 16) & 0xffff) << 48
            let high = target >> 32
            for i in 0..<8 {
                idt[vector * 16 + i] = UInt8((low >> (8 * UInt64(i))) & 0xff)
                idt[vector * 16 + 8 + i] = UInt8((high >> (8 * UInt64(i))) & 0xff)
            }
        }
        return idt
    }
}
