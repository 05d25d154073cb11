import CDigest

/// SHA-256 (FIPS 180-4), used to name stored files by content: whole
/// blocks go through the CPU's SHA extensions where it has them
/// (`CDigest`, about 1.5 GB/s here against 0.15 in Swift), else through
/// the portable Swift code below. Not constant-time; it only needs to be
/// correct and fast.
public enum SHA256 {
    /// Whether the SHA extensions do the work on this CPU.
    public static var accelerated: Bool { cdigest_has_sha_extensions() != 0 }

    /// Lowercase hex digest of `bytes` (64 characters).
    public static func hex(_ bytes: [UInt8]) -> String {
        bytes.withUnsafeBytes { hex($0) }
    }

    public static func hex(_ bytes: UnsafeRawBufferPointer) -> String {
        hexString(digest(bytes))
    }

    /// The raw 32-byte digest.
    public static func digest(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
        var h = Hasher()
        h.update(bytes)
        return h.finalize()
    }

    /// The digest by the portable code alone (to check the accelerated one).
    public static func portableDigest(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
        var h = Hasher(portable: true)
        h.update(bytes)
        return h.finalize()
    }

    /// Incremental hashing, for contents that arrive in pieces.
    public struct Hasher: Sendable {
        private var state: (UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32) = (
            0x6a09_e667, 0xbb67_ae85, 0x3c6e_f372, 0xa54f_f53a,
            0x510e_527f, 0x9b05_688c, 0x1f83_d9ab, 0x5be0_cd19)
        private var pending: [UInt8] = []   // < 64 bytes not yet compressed
        private var length: UInt64 = 0      // total bytes hashed
        private let portable: Bool

        public init() { portable = false }
        init(portable: Bool) { self.portable = portable }

        public mutating func update(_ bytes: [UInt8]) {
            bytes.withUnsafeBytes { update($0) }
        }

        public mutating func update(_ bytes: UnsafeRawBufferPointer) {
            guard var p = bytes.baseAddress, bytes.count > 0 else { return }
            var n = bytes.count
            length &+= UInt64(n)
            if !pending.isEmpty {
                let take = min(64 - pending.count, n)
                pending.append(contentsOf: UnsafeRawBufferPointer(start: p, count: take))
                p += take
                n -= take
                if pending.count == 64 {
                    let block = pending
                    block.withUnsafeBytes { if let base = $0.baseAddress { compress(base) } }
                    pending.removeAll(keepingCapacity: true)
                }
            }
            // Whole blocks straight from the caller's memory: no copying in the hot path.
            if !portable, n >= 64, compressAccelerated(p, blocks: n / 64) {
                p += n / 64 * 64
                n %= 64
            }
            while n >= 64 {
                compress(p)
                p += 64
                n -= 64
            }
            if n > 0 { pending.append(contentsOf: UnsafeRawBufferPointer(start: p, count: n)) }
        }

        /// The digest; the hasher should not be used afterwards.
        public mutating func finalize() -> [UInt8] {
            let bitLength = length &* 8
            var tail = pending
            tail.append(0x80)
            while tail.count % 64 != 56 { tail.append(0) }
            withUnsafeBytes(of: bitLength.bigEndian) { tail.append(contentsOf: $0) }
            tail.withUnsafeBytes { buf in
                guard let base = buf.baseAddress else { return }
                var off = 0
                while off < buf.count {  // tail is 64 or 128 bytes
                    compress(base + off)
                    off += 64
                }
            }
            pending = []
            var out = [UInt8]()
            out.reserveCapacity(32)
            for word in [state.0, state.1, state.2, state.3, state.4, state.5, state.6, state.7] {
                withUnsafeBytes(of: word.bigEndian) { out.append(contentsOf: $0) }
            }
            return out
        }

        /// False (and nothing done) on a CPU without the SHA extensions.
        private mutating func compressAccelerated(_ data: UnsafeRawPointer, blocks: Int) -> Bool {
            withUnsafeMutableBytes(of: &state) { s in
                guard let words = s.baseAddress?.assumingMemoryBound(to: UInt32.self) else { return false }
                return cdigest_sha256_blocks(words, data.assumingMemoryBound(to: UInt8.self), blocks) != 0
            }
        }

        private mutating func compress(_ block: UnsafeRawPointer) {
            if !portable, compressAccelerated(block, blocks: 1) { return }
            withUnsafeTemporaryAllocation(of: UInt32.self, capacity: 64) { w in
                for i in 0..<16 {
                    w[i] = UInt32(bigEndian: block.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self))
                }
                for i in 16..<64 {
                    let x = w[i - 15], y = w[i - 2]
                    let s0 = rotr(x, 7) ^ rotr(x, 18) ^ (x >> 3)
                    let s1 = rotr(y, 17) ^ rotr(y, 19) ^ (y >> 10)
                    w[i] = w[i - 16] &+ s0 &+ w[i - 7] &+ s1
                }
                var (a, b, c, d, e, f, g, h) = state
                for i in 0..<64 {
                    let s1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)
                    let ch = (e & f) ^ (~e & g)
                    let t1 = h &+ s1 &+ ch &+ roundConstants[i] &+ w[i]
                    let s0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)
                    let maj = (a & b) ^ (a & c) ^ (b & c)
                    let t2 = s0 &+ maj
                    h = g; g = f; f = e; e = d &+ t1
                    d = c; c = b; b = a; a = t1 &+ t2
                }
                state = (state.0 &+ a, state.1 &+ b, state.2 &+ c, state.3 &+ d,
                         state.4 &+ e, state.5 &+ f, state.6 &+ g, state.7 &+ h)
            }
        }
    }

    /// True for exactly 64 lowercase hex digits: the only names stored files may have.
    /// (Also keeps "../" and friends out of paths built from trace data.)
    public static func isValidHex(_ s: String) -> Bool {
        var n = 0
        for u in s.utf8 {
            guard (u >= 0x30 && u <= 0x39) || (u >= 0x61 && u <= 0x66) else { return false }
            n += 1
        }
        return n == 64
    }

    /// Lowercase hex of any bytes (digests, and the formatter's byte dumps).
    static func hexString<Bytes: Collection>(_ bytes: Bytes) -> String where Bytes.Element == UInt8 {
        let digits: [UInt8] = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(bytes.count * 2)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Inverse of hexString for valid 64-digit names; nil otherwise.
    static func rawDigest(fromHex s: String) -> [UInt8]? {
        isValidHex(s) ? bytes(fromHex: s) : nil
    }

    /// Inverse of hexString for any length of lowercase hex; nil for an
    /// odd length or any other character.
    static func bytes(fromHex s: String) -> [UInt8]? {
        let u = Array(s.utf8)
        guard u.count % 2 == 0 else { return nil }
        func nibble(_ c: UInt8) -> UInt8? {
            switch c {
            case 0x30...0x39: return c - 0x30
            case 0x61...0x66: return c - 0x61 + 10
            default: return nil
            }
        }
        var out = [UInt8]()
        out.reserveCapacity(u.count / 2)
        var i = 0
        while i < u.count {
            guard let hi = nibble(u[i]), let lo = nibble(u[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        return out
    }
}

@inline(__always)
private func rotr(_ x: UInt32, _ n: UInt32) -> UInt32 { (x >> n) | (x << (32 - n)) }

/// The round constants, one table for both ways of compressing (`CDigest`).
private let roundConstants = UnsafeBufferPointer(start: cdigest_sha256_round_constants(), count: 64)
