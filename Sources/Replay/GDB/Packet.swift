/// The gdb remote serial protocol's framing: `$payload#cs`, acknowledgements,
/// `}` escapes, and the hex encodings replies are made of. Pure functions
/// and a stream decoder, so the tests can check them without a socket.
enum Packet {
    /// The modulo-256 sum of the payload bytes as they travel.
    static func checksum<C: Sequence>(_ bytes: C) -> UInt8 where C.Element == UInt8 {
        bytes.reduce(0) { $0 &+ $1 }
    }

    /// Frames a reply: `$`, the payload, `#`, two hex digits. The payload
    /// must already be escaped if it carries binary data.
    static func frame(_ payload: [UInt8]) -> [UInt8] {
        var out: [UInt8] = [UInt8(ascii: "$")]
        out.reserveCapacity(payload.count + 4)
        out.append(contentsOf: payload)
        out.append(UInt8(ascii: "#"))
        let sum = checksum(payload)
        out.append(hexDigit(sum >> 4))
        out.append(hexDigit(sum & 15))
        return out
    }

    /// Binary data in a reply (qXfer, `x`): `$ # } *` become `}` and the byte xor 0x20.
    static func escape<C: Sequence>(_ bytes: C) -> [UInt8] where C.Element == UInt8 {
        var out: [UInt8] = []
        for b in bytes {
            if b == 0x24 || b == 0x23 || b == 0x7d || b == 0x2a {
                out.append(0x7d)
                out.append(b ^ 0x20)
            } else {
                out.append(b)
            }
        }
        return out
    }

    /// Undoes `escape` (binary packets from gdb: `X`, `vFile:pwrite`).
    static func unescape(_ bytes: [UInt8]) -> [UInt8] {
        guard bytes.contains(0x7d) else { return bytes }
        var out: [UInt8] = []
        var i = 0
        while i < bytes.count {
            if bytes[i] == 0x7d, i + 1 < bytes.count {
                out.append(bytes[i + 1] ^ 0x20)
                i += 2
            } else {
                out.append(bytes[i])
                i += 1
            }
        }
        return out
    }

    static func hexDigit(_ v: UInt8) -> UInt8 {
        v < 10 ? 0x30 + v : 0x61 + v - 10
    }

    static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: return c - 0x30
        case 0x61...0x66: return c - 0x61 + 10
        case 0x41...0x46: return c - 0x41 + 10
        default: return nil
        }
    }

    /// Bytes as lowercase hex, two digits each.
    static func hex<C: Sequence>(_ bytes: C) -> String where C.Element == UInt8 {
        var out: [UInt8] = []
        for b in bytes {
            out.append(hexDigit(b >> 4))
            out.append(hexDigit(b & 15))
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func hex(_ s: String) -> String { hex(Array(s.utf8)) }

    /// Hex pairs to bytes; nil when malformed.
    static func bytes<S: StringProtocol>(fromHex s: S) -> [UInt8]? {
        let u = Array(s.utf8)
        guard u.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(u.count / 2)
        var i = 0
        while i < u.count {
            guard let h = hexValue(u[i]), let l = hexValue(u[i + 1]) else { return nil }
            out.append(h << 4 | l)
            i += 2
        }
        return out
    }

    /// A hex number as gdb sends addresses and lengths (no prefix); nil when malformed.
    static func number<S: StringProtocol>(_ s: S) -> UInt64? {
        guard !s.isEmpty, s.utf8.count <= 16 else { return nil }
        return UInt64(s, radix: 16)
    }

    /// `addr,length` as in `m` and `qXfer`'s `offset,length`.
    static func range<S: StringProtocol>(_ s: S) -> (UInt64, Int)? {
        let parts = s.split(separator: ",", omittingEmptySubsequences: false)
        guard parts.count == 2, let a = number(parts[0]), let n = number(parts[1]), n <= 1 << 20 else { return nil }
        return (a, Int(n))
    }

    /// A 64-bit value as gdb's `g` packet carries it: little-endian hex.
    static func littleEndianHex(_ v: UInt64, bytes: Int) -> String {
        hex((0..<bytes).map { UInt8(truncatingIfNeeded: v >> (8 * UInt64($0))) })
    }
}

/// Splits the byte stream from gdb into what it means: packets, bare acks,
/// and the interrupt byte (0x03) gdb sends while the target runs.
struct PacketDecoder {
    enum Item: Equatable {
        /// A packet whose checksum matched (or was not checked), unescaped.
        case packet([UInt8])
        /// A packet whose checksum did not match: answer `-` in ack mode
        /// (in no-ack mode gdb trusts the transport and so does the stub).
        case corrupt([UInt8])
        case ack
        case nack
        case interrupt
    }

    private var buffer: [UInt8] = []

    mutating func feed(_ bytes: [UInt8]) { buffer.append(contentsOf: bytes) }

    /// The next complete item, nil when more bytes are needed.
    mutating func next() -> Item? {
        while let first = buffer.first {
            switch first {
            case UInt8(ascii: "+"): buffer.removeFirst(); return .ack
            case UInt8(ascii: "-"): buffer.removeFirst(); return .nack
            case 0x03: buffer.removeFirst(); return .interrupt
            case UInt8(ascii: "$"):
                guard let hash = buffer.firstIndex(of: UInt8(ascii: "#")) else {
                    // A runaway packet with no end: drop it rather than grow forever.
                    if buffer.count > 1 << 20 { buffer.removeAll() }
                    return nil
                }
                guard buffer.count >= hash + 3 else { return nil }
                let payload = Array(buffer[1..<hash])
                let sent = Packet.hexValue(buffer[hash + 1]).flatMap { h in Packet.hexValue(buffer[hash + 2]).map { h << 4 | $0 } }
                buffer.removeFirst(hash + 3)
                guard sent == Packet.checksum(payload) else { return .corrupt(Packet.unescape(payload)) }
                return .packet(Packet.unescape(payload))
            default:
                buffer.removeFirst()   // noise between packets
            }
        }
        return nil
    }
}
