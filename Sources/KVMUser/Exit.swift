/// Why the guest stopped running user code.
public enum Exit: Sendable, Equatable {
    /// The guest executed SYSCALL. The registers already show the state
    /// after the instruction (RIP past it, RCX and R11 as SYSCALL left them);
    /// RAX holds the number.
    case syscall
    /// The CPU raised an exception in user code; registers show the state
    /// at the faulting instruction.
    case exception(GuestException)
    /// KVM_RUN returned because a host signal arrived for detrec.
    case interrupted
}

/// An exception taken in user mode, as the IDT stub saw it.
public struct GuestException: Sendable, Equatable, CustomStringConvertible {
    public var vector: Int
    public var errorCode: UInt64?
    /// CR2 for a page fault; 0 otherwise.
    public var address: UInt64
    public var rip: UInt64

    public static let divideError = 0, debug = 1, breakpoint = 3, overflow = 4
    public static let invalidOpcode = 6, generalProtection = 13, pageFault = 14
    public static let x87 = 16, alignmentCheck = 17, simd = 19

    public var description: String {
        let names = [0: "#DE", 1: "#DB", 3: "#BP", 4: "#OF", 5: "#BR", 6: "#UD", 7: "#NM", 8: "#DF",
                     10: "#TS", 11: "#NP", 12: "#SS", 13: "#GP", 14: "#PF", 16: "#MF", 17: "#AC", 19: "#XM"]
        var s = "\(names[vector] ?? "vector \(vector)") at rip 0x\(String(rip, radix: 16))"
        if let e = errorCode { s += " error 0x\(String(e, radix: 16))" }
        if vector == GuestException.pageFault { s += " address 0x\(String(address, radix: 16))" }
        return s
    }

    /// Vectors for which the CPU pushes an error code.
    static func hasErrorCode(_ vector: Int) -> Bool {
        [8, 10, 11, 12, 13, 14, 17, 21, 29, 30].contains(vector)
    }
}
