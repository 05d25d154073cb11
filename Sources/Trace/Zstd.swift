import CZstd

/// Thin wrapper over libzstd's one-shot API: each block payload is one zstd frame.
/// Contexts are reused across blocks (creating one per call costs an allocation of
/// hundreds of KiB of tables).
enum Zstd {
    /// Level 1: the recorder is latency-sensitive and memory writes compress well anyway.
    static let level: Int32 = 1

    struct Failure: Error { var message: String }

    /// Largest compressed size zstd can produce for `n` input bytes.
    static func compressBound(_ n: Int) -> Int { ZSTD_compressBound(n) }

    static func errorName(_ code: Int) -> String {
        guard let name = ZSTD_getErrorName(code) else { return "zstd error \(code)" }
        return String(cString: name)
    }

    final class Compressor {
        private let cctx: OpaquePointer?

        init() { cctx = ZSTD_createCCtx() }
        deinit { ZSTD_freeCCtx(cctx) }

        /// Compresses `src` as one frame appended to `out`; returns the compressed size.
        func compress(_ src: UnsafeRawBufferPointer, appendingTo out: inout [UInt8]) throws(Failure) -> Int {
            let bound = ZSTD_compressBound(src.count)
            guard ZSTD_isError(bound) == 0 else { throw Failure(message: errorName(bound)) }
            let start = out.count
            out.append(contentsOf: repeatElement(0, count: bound))
            let written = out.withUnsafeMutableBytes { dst in
                let d = dst.baseAddress.map { $0 + start }
                return cctx.map { ZSTD_compressCCtx($0, d, bound, src.baseAddress, src.count, Zstd.level) }
                    ?? ZSTD_compress(d, bound, src.baseAddress, src.count, Zstd.level)
            }
            guard ZSTD_isError(written) == 0 else {
                out.removeSubrange(start...)
                throw Failure(message: errorName(written))
            }
            out.removeLast(bound - written)
            return written
        }
    }

    /// Compresses `src` as one frame into a new array, without zeroing a
    /// bound-sized buffer first (a stored range can be a large file).
    static func compressed(_ src: UnsafeRawBufferPointer, prefix: [UInt8]) throws(Failure) -> [UInt8] {
        let bound = ZSTD_compressBound(src.count)
        guard ZSTD_isError(bound) == 0 else { throw Failure(message: errorName(bound)) }
        var written = 0
        let out = [UInt8](unsafeUninitializedCapacity: prefix.count + bound) { buf, initialized in
            initialized = 0
            guard let base = buf.baseAddress else { return }
            prefix.withUnsafeBufferPointer { p in
                if let from = p.baseAddress { base.initialize(from: from, count: p.count) }
            }
            written = ZSTD_compress(base + prefix.count, bound, src.baseAddress, src.count, Zstd.level)
            initialized = prefix.count + (ZSTD_isError(written) == 0 ? written : 0)
        }
        guard ZSTD_isError(written) == 0 else { throw Failure(message: errorName(written)) }
        return out
    }

    final class Decompressor {
        private let dctx: OpaquePointer?

        init() { dctx = ZSTD_createDCtx() }
        deinit { ZSTD_freeDCtx(dctx) }

        /// Decompresses one frame that must expand to exactly `expectedSize` bytes. The output
        /// can never grow past `expectedSize`, which the caller has already capped.
        func decompress(_ src: UnsafeRawBufferPointer, expectedSize: Int) throws(Failure) -> [UInt8] {
            var result = 0
            let out = [UInt8](unsafeUninitializedCapacity: expectedSize) { buf, initialized in
                result = dctx.map { ZSTD_decompressDCtx($0, buf.baseAddress, expectedSize, src.baseAddress, src.count) }
                    ?? ZSTD_decompress(buf.baseAddress, expectedSize, src.baseAddress, src.count)
                initialized = (ZSTD_isError(result) == 0 && result == expectedSize) ? result : 0
            }
            if ZSTD_isError(result) != 0 { throw Failure(message: errorName(result)) }
            if result != expectedSize {
                throw Failure(message: "decompressed to \(result) bytes, header says \(expectedSize)")
            }
            return out
        }
    }

    /// zstd cannot expand a frame by more than its block limit over an RLE
    /// block (128 KiB from 4 bytes).
    static let maxExpansion: UInt64 = 1 << 15

    /// A stored object: `head`, then `data` as one frame (nothing when
    /// `data` is empty), the inverse of `storedFrame`.
    static func storedObject(head: [UInt8], data: [UInt8], what: String) throws(TraceError) -> [UInt8] {
        guard !data.isEmpty else { return head }
        do {
            return try data.withUnsafeBytes { src in
                Result { () throws(Failure) in try compressed(src, prefix: head) }
            }.get()
        } catch {
            throw .invalidInput(reason: "cannot compress a stored \(what): \(error.message)")
        }
    }

    /// The one frame of a stored object (a stored range, a compressed
    /// file), which must decompress to exactly `size` bytes and is absent
    /// when `size` is 0. The bytes are untrusted: a size the frame cannot
    /// reach is refused before anything is allocated for it. `what` names
    /// the object in the messages `bad` makes into errors.
    static func storedFrame(_ frame: ArraySlice<UInt8>, size: UInt64, what: String,
                            _ bad: (String) -> TraceError) throws(TraceError) -> [UInt8] {
        if size == 0 {
            guard frame.isEmpty else { throw bad("\(frame.count) bytes follow an empty \(what)") }
            return []
        }
        guard !frame.isEmpty, size / maxExpansion <= UInt64(frame.count) else {
            throw bad("\(frame.count) compressed bytes cannot hold \(size)")
        }
        do {
            return try frame.withUnsafeBytes { src in
                Result { () throws(Failure) in try Decompressor().decompress(src, expectedSize: Int(size)) }
            }.get()
        } catch {
            throw bad("zstd: \(error.message)")
        }
    }
}
