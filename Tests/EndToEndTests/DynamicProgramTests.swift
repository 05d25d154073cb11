import Foundation
import Testing

/// Dynamically linked programs: the interpreter and every mapped library
/// are stored in the trace, the guest has its own descriptor table, and
/// /proc/self describes the guest.
@Suite(.serialized) struct DynamicProgramTests {
    let dir = Harness.temporaryDirectory()

    @Test func dynamicProgramReplaysAfterItsLibrariesAreGone() throws {
        let exe = try Harness.compile(#"""
            #include <stdio.h>
            #include <sys/random.h>
            int main(void) { unsigned r; getrandom(&r, sizeof r, 0); printf("dyn %08x\n", r); return 0; }
            """#, name: "dyn", flags: [], in: dir)
        // Run it against a private copy of libc, then delete the copy.
        let libs = dir.appendingPathComponent("libs")
        try FileManager.default.createDirectory(at: libs, withIntermediateDirectories: true)
        let libc = try Harness.run(["/bin/sh", "-c", "ldd \(exe) | awk '/libc.so/ {print $3}'"]).stdout
            .trimmingCharacters(in: .whitespacesAndNewlines)
        try FileManager.default.copyItem(atPath: libc, toPath: libs.appendingPathComponent("libc.so.6").path)
        let trace = dir.appendingPathComponent("dyn-trace")
        let rec = try Harness.record([exe], trace: trace, environment: ["LD_LIBRARY_PATH": libs.path])
        #expect(rec.status == 0)
        #expect(rec.stdout.hasPrefix("dyn "))
        try FileManager.default.removeItem(at: libs)
        try FileManager.default.removeItem(atPath: exe)
        let rep = try Harness.replay(trace)
        #expect(rep.stdout == rec.stdout, "\(rep.stderr)")
        // The interpreter is loaded by detrec and stored like the program.
        let header = try Harness.dumpJSON(trace).first
        let extra = header?["extra"] as? [String: String]
        #expect(extra?["interpreter"]?.contains("ld-linux") == true)
    }

    @Test func descriptorTableIsTheGuests() throws {
        let exe = try Harness.compile(#"""
            #include <fcntl.h>
            #include <stdio.h>
            #include <unistd.h>
            int main(void) {
              int a = open("/etc/hostname", O_RDONLY), b = open("/etc/hostname", O_RDONLY);
              close(a); int c = dup(b); int d = fcntl(b, F_DUPFD, 40);
              printf("%d %d %d %d %d\n", a, b, c, d, fcntl(7, F_GETFD));
              return 0;
            }
            """#, name: "fds", flags: [], in: dir)
        let (rec, _) = try Harness.roundTrip([exe], in: dir)
        #expect(rec.stdout == "3 4 3 40 -1\n")
    }

    @Test func procSelfDescribesTheGuest() throws {
        let exe = try Harness.compile(#"""
            #include <dirent.h>
            #include <stdio.h>
            #include <string.h>
            #include <sys/auxv.h>
            #include <unistd.h>
            int main(int argc, char **argv) {
              char exe[512] = {0}; readlink("/proc/self/exe", exe, sizeof exe - 1);
              printf("exe-matches %d\n", strcmp(exe, argv[1]) == 0);
              FILE *m = fopen("/proc/self/maps", "r"); char line[512]; int stack = 0, self = 0;
              while (fgets(line, sizeof line, m)) { if (strstr(line, "[stack]")) stack = 1; if (strstr(line, argv[1])) self = 1; }
              fclose(m);
              printf("maps stack %d self %d\n", stack, self);
              FILE *s = fopen("/proc/self/status", "r"); int threads = 0;
              while (fgets(line, sizeof line, s)) sscanf(line, "Threads: %d", &threads);
              fclose(s);
              printf("threads %d\n", threads);
              FILE *a = fopen("/proc/self/auxv", "r"); unsigned long kv[2]; unsigned long entry = 0;
              while (fread(kv, sizeof kv, 1, a) == 1) if (kv[0] == AT_ENTRY) entry = kv[1];
              fclose(a);
              printf("auxv-entry-matches %d\n", entry == getauxval(AT_ENTRY));
              DIR *d = opendir("/proc/self/fd"); struct dirent *e; int n = 0;
              while ((e = readdir(d))) if (e->d_name[0] != '.') n++;
              closedir(d);
              printf("fds %d\n", n >= 4);   /* 0, 1, 2, the directory, and whatever the runner passed on */
              return 0;
            }
            """#, name: "procself", flags: [], in: dir)
        let real = URL(fileURLWithPath: exe).resolvingSymlinksInPath().path
        let (rec, _) = try Harness.roundTrip([exe, real], in: dir)
        #expect(rec.stdout == "exe-matches 1\nmaps stack 1 self 1\nthreads 1\nauxv-entry-matches 1\nfds 1\n")
    }

    @Test func systemProgram() throws {
        let (rec, _) = try Harness.roundTrip(["/usr/bin/sha256sum", "/etc/os-release"], in: dir)
        #expect(rec.status == 0)
        #expect(rec.stdout.contains("/etc/os-release"))
    }
}
