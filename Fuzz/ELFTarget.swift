// libFuzzer target for the ELF parser (scripts/fuzz.sh elf). Built with
// Sources/Kernel/Processes/ELFImage.swift and libelf; loading into a vCPU process is
// covered by Tests/KernelTests/ELFFuzzTests (it needs /dev/kvm per input).
// A crash, a Swift trap or a failed precondition is a finding.

@_cdecl("LLVMFuzzerTestOneInput")
public func elfFuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    guard let image = try? ELFImage(bytes) else { return 0 }
    // What parses is what the loader relies on.
    for s in image.loadSegments {
        precondition(s.offset <= UInt64(size) && s.filesz <= UInt64(size) - s.offset, "segment outside the file")
        precondition(s.filesz <= s.memsz && s.memsz < 1 << 40 && s.vaddr < 1 << 47, "segment bounds")
    }
    if let span = image.span { precondition(span.low <= span.high) }
    return 0
}
