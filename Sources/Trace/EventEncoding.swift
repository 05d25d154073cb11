/// The compact little-endian binary encoding of events inside a block payload
/// (layout documented in docs/trace-format.md; change it only together with traceFormatVersion).
enum EventEncoding {
    /// One-byte tag that starts every event.
    enum Kind: UInt8 {
        case processStart = 1
        case syscall = 2
        case exit = 3
        case fatalSignal = 4
        case blocked = 5
        case signal = 6
        case dataCheck = 7
        case preempt = 8
    }

    /// One-byte tag that starts every memory write.
    enum WriteKind: UInt8 {
        case bytes = 1
        case stored = 2
        /// Format 5 on.
        case storedRange = 3
    }

    /// Most literal bytes (`.bytes` data plus atRandom) one event may carry; the reader refuses
    /// more, so the writer must too.
    static let maxEventDataBytes = 1 << 30
    /// Smallest encoding of one memory write (tag + address + length of an empty `.bytes`),
    /// used to reject absurd write counts before allocating for them.
    static let minWriteSize = 1 + 8 + 4
    static let syscallArgCount = 6

    // MARK: Encoding

    /// Appends the encoding of `event` to `out`. Validates first, so on a throw `out` is unchanged.
    static func encode(_ event: Event, into out: inout [UInt8]) throws(TraceError) {
        // What the reader would refuse is never written: a trace always reads back.
        if let problem = EventValidation.problem(event) {
            throw .invalidInput(reason: "\(event.kindName) event not written: \(problem)")
        }
        switch event {
        case let .processStart(tid, atRandom):
            guard atRandom.count <= maxEventDataBytes else {
                throw .invalidInput(reason: "atRandom of \(atRandom.count) bytes exceeds \(maxEventDataBytes)")
            }
            out.append(Kind.processStart.rawValue)
            put(tid, &out)
            put(UInt32(atRandom.count), &out)
            out.append(contentsOf: atRandom)

        case let .syscall(r):
            guard r.args.count == syscallArgCount else {
                throw .invalidInput(reason: "syscall \(r.number) has \(r.args.count) args; the format stores exactly 6")
            }
            var dataBytes = 0
            var digests: [[UInt8]] = []
            for w in r.writes {
                switch w {
                case let .bytes(_, data):
                    dataBytes += data.count
                case let .stored(_, _, sha256, _), let .storedRange(_, _, sha256, _):
                    guard let raw = SHA256.rawDigest(fromHex: sha256) else {
                        throw .invalidInput(reason: "stored memory write names \"\(sha256)\", not a lowercase hex SHA-256")
                    }
                    digests.append(raw)
                }
                guard dataBytes <= maxEventDataBytes else {
                    throw .invalidInput(reason: "syscall \(r.number) writes more than \(maxEventDataBytes) bytes of memory")
                }
            }
            guard r.writes.count <= Int(UInt32.max) else {
                throw .invalidInput(reason: "too many memory writes")
            }
            out.append(Kind.syscall.rawValue)
            put(r.tid, &out)
            put(r.ticks, &out)
            put(r.rip, &out)
            put(r.number, &out)
            for a in r.args { put(a, &out) }
            put(r.result, &out)
            put(UInt32(r.writes.count), &out)
            var nextDigest = 0
            for w in r.writes {
                switch w {
                case let .bytes(address, data):
                    out.append(WriteKind.bytes.rawValue)
                    put(address, &out)
                    put(UInt32(data.count), &out)
                    out.append(contentsOf: data)
                case let .stored(address, length, _, offset), let .storedRange(address, length, _, offset):
                    if case .stored = w { out.append(WriteKind.stored.rawValue) } else { out.append(WriteKind.storedRange.rawValue) }
                    put(address, &out)
                    put(length, &out)
                    put(offset, &out)
                    out.append(contentsOf: digests[nextDigest])
                    nextDigest += 1
                }
            }

        case let .exit(tid, status):
            out.append(Kind.exit.rawValue)
            put(tid, &out)
            put(status, &out)

        case let .fatalSignal(tid, signal, code, rip, address):
            out.append(Kind.fatalSignal.rawValue)
            put(tid, &out)
            put(signal, &out)
            put(code, &out)
            put(rip, &out)
            put(address, &out)

        case let .blocked(tid, number, rip):
            out.append(Kind.blocked.rawValue)
            put(tid, &out)
            put(number, &out)
            put(rip, &out)

        case let .signal(tid, signal, code):
            out.append(Kind.signal.rawValue)
            put(tid, &out)
            put(signal, &out)
            put(code, &out)

        case let .dataCheck(tid, length, crc):
            out.append(Kind.dataCheck.rawValue)
            put(tid, &out)
            put(length, &out)
            put(crc, &out)

        case let .preempt(tid, rip, hits, registers):
            out.append(Kind.preempt.rawValue)
            put(tid, &out)
            put(rip, &out)
            put(hits, &out)
            put(registers, &out)
        }
    }

    @inline(__always)
    private static func put<T: FixedWidthInteger>(_ v: T, _ out: inout [UInt8]) {
        withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) }
    }

    // MARK: Decoding

    struct DecodingError: Error {
        enum Problem { case malformed(String), unknownKind(UInt8) }
        var problem: Problem
        /// Offset within the uncompressed payload.
        var payloadOffset: Int
    }

    /// Decodes exactly `count` events filling all of `payload`. Never traps: every length is
    /// checked against the bytes that remain before anything is allocated for it.
    /// `version` is the trace's format version: before 4, syscall numbers are 32 bits.
    static func decode(_ payload: UnsafeRawBufferPointer, count: Int,
                       version: UInt32 = traceFormatVersion) throws(DecodingError) -> [Event] {
        var c = Cursor(buf: payload)
        var events: [Event] = []
        // Every event takes at least 1 byte, so this reservation is bounded by the payload.
        events.reserveCapacity(min(count, payload.count))
        for i in 0..<count {
            guard c.remaining > 0 else {
                throw DecodingError(problem: .malformed("payload ends after \(i) of \(count) events"),
                                    payloadOffset: c.pos)
            }
            let start = c.pos
            let event = try decodeOne(&c, version: version)
            if let problem = EventValidation.problem(event) {
                throw DecodingError(problem: .malformed("\(event.kindName) event \(i): \(problem)"), payloadOffset: start)
            }
            events.append(event)
        }
        if c.remaining != 0 {
            throw DecodingError(problem: .malformed("\(c.remaining) bytes left over after \(count) events"),
                                payloadOffset: c.pos)
        }
        return events
    }

    private static func decodeOne(_ c: inout Cursor, version: UInt32) throws(DecodingError) -> Event {
        /// Syscall numbers: all of RAX from format 4 on, its low 32 bits before.
        func readNumber(_ c: inout Cursor) throws(DecodingError) -> UInt64 {
            version >= 4 ? try c.u64() : UInt64(try c.u32())
        }
        let start = c.pos
        let tag = try c.u8()
        guard let kind = Kind(rawValue: tag) else {
            throw DecodingError(problem: .unknownKind(tag), payloadOffset: start)
        }
        switch kind {
        case .processStart:
            let tid = try c.i32()
            let n = Int(try c.u32())
            guard n <= maxEventDataBytes else { throw c.error("atRandom length \(n) exceeds the limit") }
            return .processStart(tid: tid, atRandom: try c.bytes(n))

        case .syscall:
            let tid = try c.i32()
            let ticks = try c.u64()
            let rip = try c.u64()
            let number = try readNumber(&c)
            var args: [UInt64] = []
            args.reserveCapacity(syscallArgCount)
            for _ in 0..<syscallArgCount { args.append(try c.u64()) }
            let result = try c.i64()
            let writeCount = Int(try c.u32())
            guard writeCount <= c.remaining / minWriteSize else {
                throw c.error("\(writeCount) memory writes cannot fit in the \(c.remaining) bytes left")
            }
            var writes: [MemoryWrite] = []
            writes.reserveCapacity(writeCount)
            var dataBytes = 0
            for _ in 0..<writeCount {
                let wstart = c.pos
                let wtag = try c.u8()
                // Stored ranges exist from format 5 on: before, the tag is unknown.
                let kind = WriteKind(rawValue: wtag).flatMap { $0 == .storedRange && version < 5 ? nil : $0 }
                switch kind {
                case .bytes:
                    let address = try c.u64()
                    let n = Int(try c.u32())
                    dataBytes += n
                    guard dataBytes <= maxEventDataBytes else {
                        throw c.error("memory writes of one syscall exceed \(maxEventDataBytes) bytes")
                    }
                    writes.append(.bytes(address: address, data: try c.bytes(n)))
                case .stored, .storedRange:
                    let address = try c.u64()
                    let length = try c.u64()
                    let offset = try c.u64()
                    let sha256 = SHA256.hexString(try c.bytes(32))
                    writes.append(kind == .stored ? .stored(address: address, length: length, sha256: sha256, offset: offset)
                                                  : .storedRange(address: address, length: length, sha256: sha256, offset: offset))
                case nil:
                    throw DecodingError(problem: .malformed("unknown memory write kind 0x\(String(wtag, radix: 16))"),
                                        payloadOffset: wstart)
                }
            }
            return .syscall(SyscallRecord(tid: tid, ticks: ticks, rip: rip, number: number,
                                          args: args, result: result, writes: writes))

        case .exit:
            return .exit(tid: try c.i32(), status: try c.i32())

        case .fatalSignal:
            let tid = try c.i32()
            let signal = try c.i32()
            let code = try c.i32()
            let rip = try c.u64()
            let address = try c.u64()
            return .fatalSignal(tid: tid, signal: signal, code: code, rip: rip, address: address)

        case .blocked:
            let tid = try c.i32()
            let number = try readNumber(&c)
            let rip = try c.u64()
            return .blocked(tid: tid, number: number, rip: rip)

        case .signal:
            let tid = try c.i32()
            let signal = try c.i32()
            return .signal(tid: tid, signal: signal, code: try c.i32())

        case .dataCheck:
            let tid = try c.i32()
            let length = try c.u64()
            return .dataCheck(tid: tid, length: length, crc32c: try c.u32())

        case .preempt:
            let tid = try c.i32()
            let rip = try c.u64()
            let hits = try c.u64()
            return .preempt(tid: tid, rip: rip, hits: hits, registers: try c.u64())
        }
    }

    /// Bounds-checked little-endian reads from a payload.
    private struct Cursor {
        let buf: UnsafeRawBufferPointer
        var pos = 0
        var remaining: Int { buf.count - pos }

        func error(_ reason: String) -> DecodingError {
            DecodingError(problem: .malformed(reason), payloadOffset: pos)
        }

        @inline(__always)
        mutating func load<T: FixedWidthInteger>(_: T.Type) throws(DecodingError) -> T {
            let size = MemoryLayout<T>.size
            guard remaining >= size else { throw error("event cut short: needs \(size) more bytes, \(remaining) left") }
            let v = T(littleEndian: buf.loadUnaligned(fromByteOffset: pos, as: T.self))
            pos += size
            return v
        }

        mutating func u8() throws(DecodingError) -> UInt8 { try load(UInt8.self) }
        mutating func u32() throws(DecodingError) -> UInt32 { try load(UInt32.self) }
        mutating func i32() throws(DecodingError) -> Int32 { try load(Int32.self) }
        mutating func u64() throws(DecodingError) -> UInt64 { try load(UInt64.self) }
        mutating func i64() throws(DecodingError) -> Int64 { try load(Int64.self) }

        /// Copies `n` bytes out in one go; `n` is checked against what is left first.
        mutating func bytes(_ n: Int) throws(DecodingError) -> [UInt8] {
            guard n >= 0, n <= remaining else {
                throw error("length \(n) runs past the end of the payload (\(remaining) bytes left)")
            }
            let out = Array(UnsafeRawBufferPointer(rebasing: buf[pos..<(pos + n)]))
            pos += n
            return out
        }
    }
}
