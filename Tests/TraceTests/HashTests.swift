import Testing
@testable import Trace

@Suite struct SHA256Tests {
    @Test func knownVectors() {
        #expect(SHA256.hex([]) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(SHA256.hex(Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(SHA256.hex(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8))
                == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
    }

    /// Lengths around the 55/56/64-byte padding boundaries, checked against Python's hashlib.
    @Test(arguments: [
        (55, "463eb28e72f82e0a96c0a4cc53690c571281131f672aa229e0d45ae59b598b59"),
        (56, "da2ae4d6b36748f2a318f23e7ab1dfdf45acdc9d049bd80e59de82a60895f562"),
        (63, "29af2686fd53374a36b0846694cc342177e428d1647515f078784d69cdb9e488"),
        (64, "fdeab9acf3710362bd2658cdc9a29e8f9c757fcf9811603a8c447cd1d9151108"),
        (65, "4bfd2c8b6f1eec7a2afeb48b934ee4b2694182027e6d0fc075074f2fabb31781"),
        (119, "da18797ed7c3a777f0847f429724a2d8cd5138e6ed2895c3fa1a6d39d18f7ec6"),
        (120, "f52b23db1fbb6ded89ef42a23ce0c8922c45f25c50b568a93bf1c075420bbb7c"),
        (128, "471fb943aa23c511f6f72f8d1652d9c880cfa392ad80503120547703e56a2be5"),
        (1000, "4e4c294b331f7a2099a379bec34b9f9fc03dc46ab465d998f4d683da53487e6d"),
    ])
    func paddingBoundaries(length: Int, expected: String) {
        let input = (0..<length).map { UInt8($0 % 251) }
        #expect(SHA256.hex(input) == expected)
    }

    /// 1,000,000 bytes of (i*31+7) mod 256; constant from `sha256sum`.
    @Test func oneMegabyte() {
        let input = (0..<1_000_000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        #expect(SHA256.hex(input) == "668f6709eed11666baa9f0fcd94cbae12c6ad4236918792be36e62d03257fc44")
    }

    /// The SHA extensions (where this CPU has them) and the portable code
    /// agree on every length around the block size and on a large input;
    /// the known vectors above check whichever this host uses.
    @Test func acceleratedAndPortableAgree() {
        let input = (0..<300_000).map { UInt8(truncatingIfNeeded: ($0 &* 2_654_435_761) >> 13) }
        for length in Array(0...200) + [4095, 4096, 4097, 300_000] {
            input[..<length].withUnsafeBytes { b in
                #expect(SHA256.digest(b) == SHA256.portableDigest(b), "length \(length)")
            }
        }
    }

    @Test func incrementalMatchesOneShot() {
        let input = (0..<1000).map { UInt8($0 % 251) }
        for split in [0, 1, 63, 64, 65, 500, 999, 1000] {
            var h = SHA256.Hasher()
            h.update(Array(input[..<split]))
            h.update(Array(input[split...]))
            #expect(SHA256.hexString(h.finalize()) == SHA256.hex(input))
        }
    }

    @Test func hexValidation() {
        let good = SHA256.hex([1, 2, 3])
        #expect(SHA256.isValidHex(good))
        #expect(SHA256.rawDigest(fromHex: good).map(SHA256.hexString) == good)
        #expect(!SHA256.isValidHex(good.uppercased()))
        #expect(!SHA256.isValidHex("../header.json"))
        #expect(!SHA256.isValidHex(String(good.dropLast())))
        #expect(!SHA256.isValidHex(good + "0"))
    }
}

@Suite struct CRC32CTests {
    private func crc(_ bytes: [UInt8], seed: UInt32 = 0) -> UInt32 { CRC32C.checksum(bytes, seed: seed) }

    @Test func knownVectors() {
        #expect(crc(Array("123456789".utf8)) == 0xE306_9283)
        #expect(crc([]) == 0)
        // RFC 3720 (iSCSI) appendix B.4.
        #expect(crc([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA)
        #expect(crc([UInt8](repeating: 0xFF, count: 32)) == 0x62A8_AB43)
        #expect(crc((0..<32).map { UInt8($0) }) == 0x46DD_794E)
        #expect(crc((0..<32).map { UInt8(31 - $0) }) == 0x113F_DB5C)
    }

    /// Slice-by-8 must agree with the plain bitwise definition at every length and alignment,
    /// and seeding must chain.
    @Test func matchesBitwiseReference() {
        func reference(_ bytes: ArraySlice<UInt8>) -> UInt32 {
            var c: UInt32 = 0xFFFF_FFFF
            for b in bytes {
                c ^= UInt32(b)
                for _ in 0..<8 { c = (c & 1) != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
            }
            return ~c
        }
        var rng = SplitMix64(state: 1)
        let data = (0..<300).map { _ in UInt8.random(in: 0...255, using: &rng) }
        for start in 0..<9 {
            for end in stride(from: start, through: data.count, by: 7) {
                let slice = data[start..<end]
                let got = slice.withUnsafeBytes { CRC32C.checksum($0) }
                #expect(got == reference(slice))
            }
        }
        let whole = crc(data)
        #expect(crc(Array(data[100...]), seed: crc(Array(data[..<100]))) == whole)
    }
}
