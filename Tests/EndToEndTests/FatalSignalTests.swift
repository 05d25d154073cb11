import Foundation
import Testing

/// Programs that die of a signal: the recording ends with a fatalSignal
/// event, `record` exits 128+N, and every replay dies the same way after
/// printing the same output.
@Suite struct FatalSignalTests {
    static let program = #"""
    #include <stdio.h>
    #include <stdlib.h>
    #include <string.h>
    #include <sys/mman.h>
    int main(int argc, char **argv) {
        const char *what = argv[1];
        printf("before %s\n", what);
        fflush(stdout);
        if (!strcmp(what, "null")) *(volatile int *)0 = 1;
        if (!strcmp(what, "trap")) __builtin_trap();
        if (!strcmp(what, "div")) { volatile int a = 7, b = 0; printf("%d\n", a / b); }
        if (!strcmp(what, "abort")) abort();
        if (!strcmp(what, "readonly")) {
            char *p = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            p[0] = 1;
            printf("mprotect=%d page=%p\n", mprotect(p, 4096, PROT_READ), (void *)p);
            printf("still readable=%d\n", p[0]);
            fflush(stdout);
            p[8] = 2;
        }
        printf("after\n");
        return 0;
    }
    """#

    struct Case: CustomTestStringConvertible, Sendable {
        var what: String
        var signal: Int
        /// si_code in the trace's fatalSignal event, when it is fixed.
        var code: Int?
        var testDescription: String { "\(what) → signal \(signal)" }
    }

    @Test(arguments: [
        Case(what: "null", signal: 11, code: 1),       // SEGV_MAPERR
        Case(what: "readonly", signal: 11, code: 2),   // SEGV_ACCERR
        Case(what: "trap", signal: 4, code: 2),        // ILL_ILLOPN
        Case(what: "div", signal: 8, code: 1),         // FPE_INTDIV
        Case(what: "abort", signal: 6, code: nil),
    ])
    func programDiesOfSignal(_ c: Case) throws {
        let s = Scratch(); defer { s.remove() }
        let r = try recordAndReplay(try compile(Self.program), [c.what], in: s)
        #expect(r.record.status == Int32(128 + c.signal), "\(r.record)")
        #expect(r.record.stdout.hasPrefix("before \(c.what)\n"))
        #expect(!r.record.stdout.contains("after"))
        for replay in r.replays {
            #expect(replay.status == Int32(128 + c.signal), "replay: \(replay)")
            #expect(!replay.stderr.contains("diverged"), "\(replay.stderr)")
        }
        let d = try dumpJSON(r.trace, in: s)
        let last = d.events.last
        #expect(last?.string("kind") == "fatalSignal")
        #expect(last?.int("signal") == c.signal)
        if let code = c.code { #expect(last?.int("code") == code) }
        switch c.what {
        case "null":
            #expect(last?.string("address") == "0x0")
        case "readonly":
            #expect(r.record.stdout.contains("mprotect=0"))
            #expect(r.record.stdout.contains("still readable=1"))
            // The fault address is the byte written, in the page printed.
            let page = keyValues(r.record.stdout.replacingOccurrences(of: " page=", with: "\npage="))["page"]
            let pageAddress = page.flatMap { UInt64($0.dropFirst(2), radix: 16) }
            let faultAddress = last?.string("address").flatMap { UInt64($0.dropFirst(2), radix: 16) }
            #expect(pageAddress != nil && faultAddress == pageAddress.map { $0 + 8 })
        default:
            break
        }
    }
}
