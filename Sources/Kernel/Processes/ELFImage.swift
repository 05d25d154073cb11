import CElf
import Glibc
import Synchronization

/// A parsed ELF executable: what the loader needs from its headers. Parsed
/// with libelf from bytes (the trace stores the executable, so replay never
/// reads it from disk). Input is untrusted: every offset is checked.
public struct ELFImage: Sendable {
    public struct Segment: Equatable, Sendable {
        public var type: UInt32
        public var flags: UInt32
        public var offset: UInt64
        public var vaddr: UInt64
        public var filesz: UInt64
        public var memsz: UInt64

        public var protection: PageProtectionBits {
            PageProtectionBits(read: flags & 4 != 0, write: flags & 2 != 0, execute: flags & 1 != 0)
        }
    }

    public struct PageProtectionBits: Equatable, Sendable { public var read, write, execute: Bool }

    public enum LoadError: Error, CustomStringConvertible, Equatable {
        case notELF, wrongClass, wrongMachine, notExecutable(UInt16), malformed(String)
        public var description: String {
            switch self {
            case .notELF: return "not an ELF file"
            case .wrongClass: return "not a 64-bit ELF file"
            case .wrongMachine: return "not an x86-64 program"
            case .notExecutable(let t): return "ELF type \(t) is not an executable"
            case .malformed(let why): return "malformed ELF: \(why)"
            }
        }
    }

    public var type: UInt16
    public var entry: UInt64
    public var phoff: UInt64
    public var phentsize: UInt16
    public var segments: [Segment]
    /// The PT_INTERP path, for dynamically linked programs.
    public var interpreter: String?
    /// The sections of instructions (SHF_EXECINSTR with file contents),
    /// nil when the file has no section headers: the only bytes worth
    /// scanning for rdtsc and cpuid. A loadable segment that is executable
    /// may also hold data (.rodata, .dynsym, .eh_frame with
    /// `-z noseparate-code`, as libLLVM), which an int3 would corrupt for
    /// the program's own loads.
    public var code: [Section]?

    public struct Section: Equatable, Sendable {
        public var address: UInt64, offset: UInt64, size: UInt64
    }

    public static let ET_EXEC: UInt16 = 2, ET_DYN: UInt16 = 3
    public static let PT_LOAD: UInt32 = 1, PT_INTERP: UInt32 = 3, PT_PHDR: UInt32 = 6

    public init(_ bytes: [UInt8]) throws(LoadError) {
        guard bytes.count >= 64, bytes[0] == 0x7f, bytes[1] == 0x45, bytes[2] == 0x4c, bytes[3] == 0x46 else {
            throw .notELF
        }
        guard bytes[4] == 2 else { throw .wrongClass }
        elf_version(UInt32(EV_CURRENT))
        var copy = bytes
        let parsed: Result<ELFImage, LoadError> = copy.withUnsafeMutableBytes { raw in
            guard let base = raw.baseAddress,
                  let elf = elf_memory(base.assumingMemoryBound(to: CChar.self), raw.count) else {
                return .failure(.malformed(String(cString: elf_errmsg(-1))))
            }
            defer { elf_end(elf) }
            var ehdr = GElf_Ehdr()
            guard gelf_getehdr(elf, &ehdr) != nil else { return .failure(.malformed("no ELF header")) }
            guard ehdr.e_machine == 62 else { return .failure(.wrongMachine) }
            guard ehdr.e_type == ELFImage.ET_EXEC || ehdr.e_type == ELFImage.ET_DYN else {
                return .failure(.notExecutable(ehdr.e_type))
            }
            // binfmt_elf's load_elf_phdrs: 56-byte entries, 64 KiB of them at most.
            var count = 0
            guard elf_getphdrnum(elf, &count) == 0, count > 0, count <= 65536 / 56, ehdr.e_phentsize == 56 else {
                return .failure(.malformed("bad program header count or size"))
            }
            var segments: [Segment] = []
            var interp: String?
            for i in 0..<count {
                var ph = GElf_Phdr()
                guard gelf_getphdr(elf, Int32(i), &ph) != nil else { return .failure(.malformed("program header \(i)")) }
                let s = Segment(type: ph.p_type, flags: ph.p_flags, offset: ph.p_offset,
                                vaddr: ph.p_vaddr, filesz: ph.p_filesz, memsz: ph.p_memsz)
                if s.type == ELFImage.PT_LOAD || s.type == ELFImage.PT_INTERP {
                    let (end, o) = s.offset.addingReportingOverflow(s.filesz)
                    guard !o, end <= UInt64(raw.count), s.filesz <= s.memsz || s.type != ELFImage.PT_LOAD,
                          s.memsz < (1 << 40), s.vaddr < (1 << 47) else {
                        return .failure(.malformed("segment \(i) lies outside the file or the address space"))
                    }
                    // Its file pages are mapped at its page: offset and
                    // address must agree within a page (mmap's EINVAL on Linux).
                    guard s.type != ELFImage.PT_LOAD || s.filesz == 0 || s.offset & 4095 == s.vaddr & 4095 else {
                        return .failure(.malformed("segment \(i)'s file offset and address differ within a page"))
                    }
                }
                if s.type == ELFImage.PT_INTERP, s.filesz > 1, s.filesz < 4096 {
                    let b = raw[Int(s.offset)..<Int(s.offset + s.filesz)]
                    interp = String(decoding: b.prefix { $0 != 0 }, as: UTF8.self)
                }
                segments.append(s)
            }
            var image = ELFImage(type: ehdr.e_type, entry: ehdr.e_entry, phoff: ehdr.e_phoff,
                                 phentsize: ehdr.e_phentsize, segments: segments, interpreter: interp)
            image.code = ELFImage.codeSections(elf, fileSize: UInt64(raw.count))
            return .success(image)
        }
        self = try parsed.get()
    }

    /// The image of a file whose SHA-256 is `sha256`, parsed once per
    /// content ("" for unknown content: parsed every time). An exec parses
    /// its program and interpreter twice, and every exec of the same
    /// program again; a parse copies the whole file for libelf.
    public static func parse(_ bytes: [UInt8], sha256: String) throws(LoadError) -> ELFImage {
        guard !sha256.isEmpty else { return try ELFImage(bytes) }
        let key = ParseKey(sha256: sha256, count: bytes.count)
        if let known = ELFImage.parsed.withLock({ $0[key] }) { return try known.get() }
        let result: Result<ELFImage, LoadError>
        do throws(LoadError) { result = .success(try ELFImage(bytes)) } catch { result = .failure(error) }
        ELFImage.parsed.withLock { cache in
            if cache.count >= 256 { cache.removeAll() }
            cache[key] = result
        }
        return try result.get()
    }

    struct ParseKey: Hashable, Sendable { var sha256: String; var count: Int }
    private static let parsed = Mutex<[ParseKey: Result<ELFImage, LoadError>]>([:])

    private init(type: UInt16, entry: UInt64, phoff: UInt64, phentsize: UInt16, segments: [Segment], interpreter: String?) {
        self.type = type; self.entry = entry; self.phoff = phoff
        self.phentsize = phentsize; self.segments = segments; self.interpreter = interpreter
    }

    public var loadSegments: [Segment] { segments.filter { $0.type == ELFImage.PT_LOAD } }

    /// SHF_EXECINSTR sections that lie in the file, or nil when the
    /// section headers are missing or cannot be read (then everything
    /// executable is scanned, as before).
    private static func codeSections(_ elf: OpaquePointer, fileSize: UInt64) -> [Section]? {
        var count = 0
        guard elf_getshdrnum(elf, &count) == 0, count > 1, count <= 65536 else { return nil }
        var sections: [Section] = []
        var scn = elf_nextscn(elf, nil)
        while let s = scn {
            var sh = GElf_Shdr()
            guard gelf_getshdr(s, &sh) != nil else { return nil }
            let (end, overflow) = sh.sh_offset.addingReportingOverflow(sh.sh_size)
            if sh.sh_flags & 4 != 0, sh.sh_type != 8, sh.sh_size > 0 {   // SHF_EXECINSTR, not SHT_NOBITS
                guard !overflow, end <= fileSize else { return nil }
                sections.append(Section(address: sh.sh_addr, offset: sh.sh_offset, size: sh.sh_size))
            }
            scn = elf_nextscn(elf, s)
        }
        return sections
    }

    /// The span of the loaded image before relocation.
    public var span: (low: UInt64, high: UInt64)? {
        let loads = loadSegments
        guard let low = loads.map({ $0.vaddr & ~4095 }).min(),
              let high = loads.map({ $0.vaddr + $0.memsz }).max() else { return nil }
        return (low, high)
    }
}
