import Glibc

/// sendfile, splice and tee: the kernel moves data between two descriptors
/// on the host. While other threads could run, a call that would wait
/// parks until its input has data and its output has room, and the host
/// call then moves only what cannot block: splice and tee with
/// SPLICE_F_NONBLOCK, sendfile into a pipe or socket at most PIPE_BUF
/// bytes (a short count, which callers loop over as Linux allows).
enum SpliceSyscalls {
    static let SPLICE_F_NONBLOCK: Int32 = 2

    static func register(_ t: inout SyscallTable) {
        t.addOutcome(SYS.sendfile, .host, note: "parks while other threads run; short counts into pipes then", sendfile)
        t.addOutcome(SYS.splice, .host, note: "parks while other threads run (SPLICE_F_NONBLOCK on the host)") { c in
            try splice(c, input: 0, inputOffset: 1, output: 2, outputOffset: 3, length: 4, flags: 5)
        }
        t.addOutcome(SYS.tee, .host, note: "parks while other threads run (SPLICE_F_NONBLOCK on the host)") { c in
            try splice(c, input: 0, inputOffset: nil, output: 1, outputOffset: nil, length: 2, flags: 3)
        }
    }

    /// Parks until `input` is readable and `output` writable, whichever is not.
    static func waitForBoth(_ c: SyscallCall, _ input: OpenFile, _ output: OpenFile) -> SyscallOutcome? {
        for (file, events) in [(input, Int16(POLLIN)), (output, Int16(POLLOUT))] {
            let wait = HostReadiness(fd: file.hostFD ?? -1, events: events)
            if let parked = c.park(.host(wait), unless: { !HostTransfer.mayWait(file) || HostTransfer.ready(file, events) }) {
                return parked
            }
        }
        return nil
    }

    /// An off_t argument the call reads and advances (NULL: the file's own offset).
    static func offset(_ c: SyscallCall, _ i: Int?) throws(Errno) -> (address: UInt64, value: Int64)? {
        guard let i, c.arg(i) != 0 else { return nil }
        try c.checkWritable(c.arg(i), count: 8)
        return (c.arg(i), try c.readValue(c.arg(i)))
    }

    static func sendfile(_ c: SyscallCall) throws -> SyscallOutcome {
        let output = try c.file(0), input = try c.file(1)
        let off = try offset(c, 2)
        let count = min(try c.size(3), maxTransfer)
        if let parked = waitForBoth(c, input, output) { return parked }
        let others = c.othersCouldRun
        return .result(try c.host { effects throws(Errno) -> Int64 in
            guard let o = output.hostFD, let i = input.hostFD else { throw .badf }
            let n = others && HostTransfer.mayWait(output) ? min(count, 4096) : count
            var value = off?.value ?? 0
            let r = withUnsafeMutablePointer(to: &value) { p in
                hostSyscall(SYS.sendfile, Int(o), Int(i), off == nil ? 0 : Int(bitPattern: p), n)
            }
            if r >= 0, let off { try effects.write(off.address, Bytes.u64(UInt64(bitPattern: value))) }
            return r
        })
    }

    static func splice(_ c: SyscallCall, input: Int, inputOffset: Int?, output: Int, outputOffset: Int?,
                       length: Int, flags: Int) throws -> SyscallOutcome {
        let inFile = try c.file(input), outFile = try c.file(output)
        let inOff = try offset(c, inputOffset), outOff = try offset(c, outputOffset)
        let count = min(try c.size(length), maxTransfer)
        let guestFlags = c.int(flags)
        let tee = inputOffset == nil
        if guestFlags & SPLICE_F_NONBLOCK == 0, let parked = waitForBoth(c, inFile, outFile) { return parked }
        let others = c.othersCouldRun
        return .result(try c.host { effects throws(Errno) -> Int64 in
            guard let i = inFile.hostFD, let o = outFile.hostFD else { throw .badf }
            let hostFlags = guestFlags | (others ? SPLICE_F_NONBLOCK : 0)
            var inValue = inOff?.value ?? 0, outValue = outOff?.value ?? 0
            let r = withUnsafeMutablePointer(to: &inValue) { ip in
                withUnsafeMutablePointer(to: &outValue) { op in
                    tee ? hostSyscall(SYS.tee, Int(i), Int(o), count, Int(hostFlags))
                        : hostSyscall(SYS.splice, Int(i), inOff == nil ? 0 : Int(bitPattern: ip), Int(o),
                                      outOff == nil ? 0 : Int(bitPattern: op), count, Int(hostFlags))
                }
            }
            if r >= 0, let inOff { try effects.write(inOff.address, Bytes.u64(UInt64(bitPattern: inValue))) }
            if r >= 0, let outOff { try effects.write(outOff.address, Bytes.u64(UInt64(bitPattern: outValue))) }
            return r
        })
    }
}
