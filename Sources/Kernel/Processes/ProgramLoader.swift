import KVMUser

/// What the initial stack and auxiliary vector carry besides the ELF itself.
public struct StartupInfo: Sendable, Equatable {
    /// argv and envp as the kernel copies them: byte strings, which need
    /// not be UTF-8 (an environment may hold any byte but NUL).
    public var argvBytes: [[UInt8]]
    public var envpBytes: [[UInt8]]
    /// The same, decoded (bytes that are not UTF-8 replaced): for display.
    public var argv: [String] { argvBytes.map { String(decoding: $0, as: UTF8.self) } }
    public var envp: [String] { envpBytes.map { String(decoding: $0, as: UTF8.self) } }
    /// AT_EXECFN: the path as given to exec.
    public var execPath: String
    /// The executable's absolute path (/proc/self/exe).
    public var exePath: String
    public var atRandom: [UInt8]
    public var uid: UInt32, euid: UInt32, gid: UInt32, egid: UInt32
    /// The process id the guest has (the recorder's own).
    public var pid: Int32 = 0
    /// The first thread's credentials (exec: as its rules leave them).
    public var credentials: Credentials

    public init(argvBytes: [[UInt8]], envpBytes: [[UInt8]], execPath: String, exePath: String, atRandom: [UInt8],
                uid: UInt32, euid: UInt32, gid: UInt32, egid: UInt32, pid: Int32 = 0, credentials: Credentials? = nil) {
        self.pid = pid
        self.credentials = credentials ?? Credentials(uid: uid, euid: euid, gid: gid, egid: egid)
        self.argvBytes = argvBytes; self.envpBytes = envpBytes
        self.execPath = execPath; self.exePath = exePath; self.atRandom = atRandom
        self.uid = uid; self.euid = euid; self.gid = gid; self.egid = egid
    }

    public init(argv: [String], envp: [String], execPath: String, exePath: String, atRandom: [UInt8],
                uid: UInt32, euid: UInt32, gid: UInt32, egid: UInt32, pid: Int32 = 0, credentials: Credentials? = nil) {
        self.init(argvBytes: argv.map { Array($0.utf8) }, envpBytes: envp.map { Array($0.utf8) }, execPath: execPath,
                  exePath: exePath, atRandom: atRandom, uid: uid, euid: euid, gid: gid, egid: egid, pid: pid,
                  credentials: credentials)
    }
}

/// Loads an ELF program into a process the way Linux's binfmt_elf does:
/// segments mapped with their file pages, bss zeroed, the stack built with
/// argv, envp and the auxiliary vector, and the first instruction set.
public enum ProgramLoader {
    public enum Failure: Error, CustomStringConvertible {
        case elf(ELFImage.LoadError)
        case noMemory(String)
        case needsInterpreter(String)

        public var description: String {
            switch self {
            case .elf(let e): return e.description
            case .noMemory(let what): return "cannot map \(what)"
            case .needsInterpreter(let path):
                return "the program's interpreter \(path) is not available"
            }
        }
    }

    /// Where a loaded image ended up.
    public struct Loaded: Equatable {
        public var bias: UInt64
        public var entry: UInt64
        public var phdr: UInt64
        public var phnum: Int
        public var end: UInt64
    }

    /// The most pages the segments of one image may cover. detrec maps
    /// them eagerly (Linux lazily), so a crafted p_memsz of up to 2^40
    /// bytes is refused here instead of allocating page by page.
    static let maxImagePages: UInt64 = 4 << 20   // 16 GiB

    /// One run of pages with the union of the protections of the
    /// segments covering it (segments may share their boundary pages).
    struct PageRun: Equatable {
        var start: UInt64
        var end: UInt64
        var protection: PageProtection
    }

    /// The page runs of the image's segments at `bias`, or nil when a
    /// segment's pages leave user space.
    static func pageRuns(_ image: ELFImage, bias: UInt64) -> [PageRun]? {
        var spans: [PageRun] = []
        for s in image.loadSegments where s.memsz > 0 {
            var p: PageProtection = []
            if s.flags & 4 != 0 { p.insert(.read) }
            if s.flags & 2 != 0 { p.insert(.write) }
            if s.flags & 1 != 0 { p.insert(.execute) }
            let at = s.vaddr &+ bias
            let (top, overflow) = at.addingReportingOverflow(s.memsz)
            guard !overflow, let end = AddressSpace.pageUp(top), end <= GuestMemory.userLimit else { return nil }
            spans.append(PageRun(start: at & ~4095, end: end, protection: p))
        }
        // Cut at every segment edge; each piece gets the union of the
        // protections of the segments covering it.
        let edges = Set(spans.flatMap { [$0.start, $0.end] }).sorted()
        var runs: [PageRun] = []
        for (a, b) in zip(edges, edges.dropFirst()) {
            var p: PageProtection = []
            var covered = false
            for s in spans where s.start < b && a < s.end {
                p.formUnion(s.protection)
                covered = true
            }
            guard covered else { continue }
            if var last = runs.last, last.end == a, last.protection == p {
                last.end = b
                runs[runs.count - 1] = last
            } else {
                runs.append(PageRun(start: a, end: b, protection: p))
            }
        }
        return runs
    }

    public static func load(_ image: ELFImage, bytes: [UInt8], into process: Process, name: String, bias fixedBias: UInt64? = nil) throws(Failure) -> Loaded {
        guard let span = image.span else { throw .elf(.malformed("no loadable segment")) }
        let bias: UInt64 = image.type == ELFImage.ET_DYN ? (fixedBias ?? Process.pieBase) &- span.low : 0
        guard let runs = pageRuns(image, bias: bias) else {
            throw .noMemory("\(name): a segment lies outside user space")
        }
        let pages = runs.reduce(UInt64(0)) { $0 + ($1.end - $1.start) / 4096 }
        guard pages <= maxImagePages else {
            throw .noMemory("\(name): its segments span \(pages) pages, more than \(maxImagePages)")
        }
        let memory = process.memory
        for run in runs {
            var page = run.start
            while page < run.end {
                if memory.protection(at: page) == nil {
                    do { try memory.map(page, pages: 1, protection: .rw) } catch { throw .noMemory("\(name) at 0x\(String(page, radix: 16))") }
                }
                page += 4096
            }
        }
        for s in image.loadSegments where s.memsz > 0 {
            // The file's pages are mapped whole, so bytes around the segment
            // in its first and last page show, as with Linux's mmap of the file.
            // (ELFImage checked offset + filesz against the file, and
            // pageRuns vaddr + bias + memsz against user space.)
            let fileStart = s.offset & ~4095
            let fileEnd = min(UInt64(bytes.count), AddressSpace.pageUp(s.offset + s.filesz) ?? UInt64(bytes.count))
            let at = (s.vaddr &+ bias) & ~4095
            if s.filesz > 0, fileEnd > fileStart {
                do { try memory.fill(at, with: bytes[Int(fileStart)..<Int(fileEnd)]) } catch { throw .noMemory("\(name) segment") }
            }
            // bss: zero from the end of the file data to the end of its page,
            // past memsz too, as Linux's padzero does: ld.so's early malloc
            // hands out the rest of that page and relies on it being zero.
            if s.memsz > s.filesz {
                let zeroFrom = (s.vaddr &+ bias) + s.filesz
                let zeroTo = AddressSpace.pageUp(zeroFrom) ?? zeroFrom
                if zeroTo > zeroFrom {
                    do { try memory.zero(zeroFrom, count: Int(zeroTo - zeroFrom), access: .kernel) } catch { throw .noMemory("bss") }
                }
            }
        }
        // Final protections, and the bookkeeping for /proc/self/maps.
        for run in runs {
            memory.protect(run.start, pages: Int((run.end - run.start) / 4096), protection: run.protection)
        }
        for s in image.loadSegments where s.memsz > 0 {
            let start = (s.vaddr &+ bias) & ~4095
            let end = AddressSpace.pageUp((s.vaddr &+ bias) + s.memsz) ?? start
            let inFile = (s.vaddr &+ bias) + s.filesz
            let fileEnd = min(end, AddressSpace.pageUp(inFile) ?? end)
            let p = runs.first { $0.start <= start && start < $0.end }?.protection ?? .read
            if fileEnd > start {
                process.space.insert(Mapping(start: start, end: fileEnd, protection: p, name: name, fileOffset: s.offset & ~4095))
            }
            if end > fileEnd {
                process.space.insert(Mapping(start: fileEnd, end: end, protection: p))
            }
        }
        // AT_PHDR wraps as Linux's unsigned arithmetic does: a crafted
        // e_phoff or PT_PHDR gives the program a bad pointer, not detrec a trap.
        let phdrSegment = image.segments.first { $0.type == ELFImage.PT_PHDR }
        let firstLoad = image.loadSegments.first { $0.offset == 0 }
        let phdr = phdrSegment.map { $0.vaddr &+ bias } ?? ((firstLoad?.vaddr ?? span.low) &+ bias &+ image.phoff)
        let high = span.high &+ bias
        return Loaded(bias: bias, entry: image.entry &+ bias, phdr: phdr, phnum: image.segments.count,
                      end: AddressSpace.pageUp(high) ?? high)
    }

    /// Loads a static program (ET_EXEC or static-PIE) and prepares the
    /// first instruction.
    /// Loads a program, and its interpreter (ld.so) when it names one, as
    /// binfmt_elf does: the program at its addresses (PIE at 0x555555554000),
    /// the interpreter where mmap would put it, and the first instruction at
    /// the interpreter's entry.
    /// `programSHA` and `interpreterSHA` are the SHA-256 of the files'
    /// bytes when known ("" when not): parses and scans of the same
    /// content are then reused (`ELFImage.parse`, `PatchedInstructions.ScanKey`).
    public static func start(_ bytes: [UInt8], interpreter: (path: String, bytes: [UInt8])?, info: StartupInfo,
                             process: Process, hwcap: UInt64,
                             programSHA: String = "", interpreterSHA: String = "") throws(Failure) {
        let image: ELFImage
        do { image = try ELFImage.parse(bytes, sha256: programSHA) } catch { throw .elf(error) }
        let loaded = try load(image, bytes: bytes, into: process, name: process.executablePath)
        var images: [(sha256: String, low: UInt64, high: UInt64, bias: UInt64, code: [ELFImage.Section]?)] = []
        if let span = image.span { images.append((programSHA, span.low &+ loaded.bias, loaded.end, loaded.bias, image.code)) }
        process.space.brkStart = loaded.end
        process.space.brk = loaded.end
        var entry = loaded.entry
        var base: UInt64 = 0
        if let wanted = image.interpreter {
            guard let interpreter, interpreter.path == wanted else { throw .needsInterpreter(wanted) }
            let interpImage: ELFImage
            do { interpImage = try ELFImage.parse(interpreter.bytes, sha256: interpreterSHA) } catch { throw .elf(error) }
            guard interpImage.type == ELFImage.ET_DYN, interpImage.interpreter == nil,
                  let span = interpImage.span, let size = AddressSpace.pageUp(span.high - span.low),
                  let at = process.space.findFree(length: size) else {
                throw .elf(.malformed("the interpreter \(wanted) cannot be loaded"))
            }
            let interpLoaded = try load(interpImage, bytes: interpreter.bytes, into: process, name: interpreter.path, bias: at)
            entry = interpLoaded.entry
            base = interpLoaded.bias &+ span.low
            images.append((interpreterSHA, base, interpLoaded.end, interpLoaded.bias, interpImage.code))
        }
        // binfmt_elf's BAD_ADDR: the first instruction lies in user space.
        guard entry < GuestMemory.userLimit else {
            throw .elf(.malformed("the entry point 0x\(String(entry, radix: 16)) lies outside user space"))
        }

        let stackBottom = Process.stackTop - Process.stackSize
        do {
            try process.map(Mapping(start: stackBottom, end: Process.stackTop, protection: .rw, name: "[stack]", options: [.growsDown]))
        } catch { throw .noMemory("the stack") }
        let auxv: [(UInt64, UInt64)] = [
            (16, hwcap),                     // AT_HWCAP
            (6, 4096),                       // AT_PAGESZ
            (17, 100),                       // AT_CLKTCK
            (3, loaded.phdr),                // AT_PHDR
            (4, 56),                         // AT_PHENT
            (5, UInt64(loaded.phnum)),       // AT_PHNUM
            (7, base),                       // AT_BASE: the interpreter
            (8, 0),                          // AT_FLAGS
            (9, loaded.entry),               // AT_ENTRY
            (11, UInt64(info.uid)), (12, UInt64(info.euid)),
            (13, UInt64(info.gid)), (14, UInt64(info.egid)),
            (23, 0),                         // AT_SECURE
            (26, 2),                         // AT_HWCAP2: FSGSBASE
        ]
        let sp: UInt64
        do {
            (sp, process.auxv) = try InitialStack.build(memory: process.memory, top: Process.stackTop, info: info, auxv: auxv)
        } catch { throw .noMemory("the initial stack") }
        PatchedInstructions.patchExecutable(process, images: images)
        process.pid = info.pid
        let fresh = GuestThread(tid: info.pid)
        process.family.accounting.replaced(process.threads, execing: process.current, with: fresh, in: process)
        process.threads = [fresh]
        process.current = process.threads[0]
        process.mm.loaded = process.current
        process.current.credentials = info.credentials
        process.argv = info.argvBytes
        // Linux names the task after the path it was executed by (before symlinks).
        process.commandName = String(String(info.execPath.split(separator: "/").last ?? "").prefix(15))
        process.envp = info.envpBytes
        process.machine.start(entry: entry, stack: sp)
    }
}
