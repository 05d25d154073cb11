import KVMUser

/// The stack a new program starts with, laid out as Linux's
/// create_elf_tables does: strings at the top, then AT_RANDOM's bytes, then
/// (16-byte aligned) argc, argv[], NULL, envp[], NULL and the auxiliary vector.
public enum InitialStack {
    public static func build(memory: GuestMemory, top: UInt64, info: StartupInfo, auxv: [(UInt64, UInt64)]) throws(GuestMemoryFault) -> (sp: UInt64, auxv: [UInt8]) {
        var sp = top - 8
        func push(_ bytes: [UInt8]) throws(GuestMemoryFault) -> UInt64 {
            sp -= UInt64(bytes.count)
            try memory.write(sp, bytes, access: .kernel)
            return sp
        }
        let execfn = try push(Array(info.execPath.utf8) + [0])
        var envPointers: [UInt64] = []
        for e in info.envpBytes.reversed() { envPointers.insert(try push(e + [0]), at: 0) }
        var argPointers: [UInt64] = []
        for a in info.argvBytes.reversed() { argPointers.insert(try push(a + [0]), at: 0) }
        let platform = try push(Array("x86_64".utf8) + [0])
        sp &= ~15
        let random = try push(info.atRandom.count == 16 ? info.atRandom : [UInt8](repeating: 0, count: 16))

        var vector: [(UInt64, UInt64)] = auxv
        vector.append((25, random))    // AT_RANDOM
        vector.append((31, execfn))    // AT_EXECFN
        vector.append((15, platform))  // AT_PLATFORM
        vector.append((0, 0))          // AT_NULL
        var words: [UInt64] = [UInt64(info.argvBytes.count)]
        words += argPointers + [0] + envPointers + [0]
        for (k, v) in vector { words += [k, v] }
        sp = (sp - UInt64(words.count) * 8) & ~15
        var bytes: [UInt8] = []
        bytes.reserveCapacity(words.count * 8)
        for w in words { bytes += Bytes.u64(w) }
        try memory.write(sp, bytes, access: .kernel)
        return (sp, vector.flatMap { Bytes.u64($0.0) + Bytes.u64($0.1) })
    }
}
