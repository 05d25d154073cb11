import Foundation
import Testing

/// rdtsc and cpuid in code the program writes at run time replay as
/// recorded: code made executable by mprotect is scanned then, and a
/// writable and executable mapping alternates between a writable and an
/// executable phase (WriteXorExecute), scanned when it is first run after
/// a write, by the program or by a syscall.
@Suite struct GeneratedCodeTests {
    let dir = Harness.temporaryDirectory()

    static let source = #"""
        #include <stdio.h>
        #include <string.h>
        #include <sys/mman.h>
        #include <sys/wait.h>
        #include <unistd.h>
        typedef unsigned long (*fn)(unsigned long);
        /* rdtsc; shl rdx, 32; or rax, rdx; ret */
        static const unsigned char tsc[] = {0x0f, 0x31, 0x48, 0xc1, 0xe2, 0x20, 0x48, 0x09, 0xd0, 0xc3};
        /* mov eax, edi; xor ecx, ecx; push rbx; cpuid; mov eax, ecx; pop rbx; ret: leaf's ECX */
        static const unsigned char cpu[] = {0x89, 0xf8, 0x31, 0xc9, 0x53, 0x0f, 0xa2, 0x89, 0xc8, 0x5b, 0xc3};
        /* mov eax, 42; ret */
        static const unsigned char answer[] = {0xb8, 42, 0, 0, 0, 0xc3};
        int main(void) {
          unsigned char *a = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
          memcpy(a, tsc, sizeof tsc); mprotect(a, 4096, PROT_READ | PROT_EXEC);
          unsigned long t1 = ((fn)a)(0), t2 = ((fn)a)(0);
          unsigned char *b = mmap(0, 8192, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
          memcpy(b, answer, sizeof answer);
          unsigned long v = ((fn)b)(0);
          memcpy(b, tsc, sizeof tsc);                       /* rewritten after it ran */
          unsigned long t3 = ((fn)b)(0);
          memcpy(b + 4096, cpu, sizeof cpu);
          unsigned long ecx1 = ((fn)(b + 4096))(1);
          memcpy(b, answer, sizeof answer);
          unsigned long v2 = ((fn)b)(0);
          int p[2]; pipe(p); write(p[1], tsc, sizeof tsc); read(p[0], b, sizeof tsc);   /* a syscall writes code */
          unsigned long t4 = ((fn)b)(0);
          pid_t child = fork();
          if (child == 0) { printf("child %lu\n", ((fn)b)(0) > t4); fflush(stdout); _exit(0); }
          waitpid(child, 0, 0);
          printf("tsc %lu %lu %lu %lu answer %lu %lu rdrand %lu\n", t1, t2, t3, t4, v, v2, (ecx1 >> 30) & 1);
          printf("ordered %d\n", t1 < t2 && t2 < t3 && t3 < t4);
          return 0;
        }
        """#

    @Test func countersReadByGeneratedCodeReplay() throws {
        let exe = try Harness.compile(Self.source, name: "jit", in: dir)
        let (rec, trace) = try Harness.roundTrip([exe], in: dir)
        #expect(rec.status == 0, "\(rec.stderr)")
        #expect(rec.stdout.contains("answer 42 42 rdrand 0\n"), "cpuid in generated code answers from the model: \(rec.stdout)")
        #expect(rec.stdout.hasSuffix("ordered 1\n"), "\(rec.stdout)")
        #expect(rec.stdout.hasPrefix("child 1\n"), "\(rec.stdout)")
        let reads = try Harness.dumpJSON(trace).filter { ($0["name"] as? String) == "rdtsc" }
        #expect(reads.count >= 5, "every generated rdtsc is an event: \(reads.count)")
    }
}
