import Foundation
import Testing

/// fork, exec and wait: child processes get their own machine, and every
/// process's events interleave in one trace that replays exactly.
@Suite(.serialized) struct ProcessTests {
    let dir = Harness.temporaryDirectory()

    @Test func forkPipeAndWait() throws {
        let exe = try Harness.compile(#"""
            #include <stdio.h>
            #include <sys/random.h>
            #include <sys/wait.h>
            #include <unistd.h>
            int main(void) {
              int p[2]; pipe(p);
              pid_t c = fork();
              if (c == 0) { close(p[0]); unsigned r; getrandom(&r, sizeof r, 0);
                char m[64]; int n = snprintf(m, sizeof m, "child %d %u", getpid() - getppid(), r % 100); write(p[1], m, n); _exit(5); }
              close(p[1]); char b[64] = {0}; read(p[0], b, sizeof b - 1);
              int st; pid_t w = waitpid(c, &st, 0);
              printf("%s | %d %d\n", b, w == c, WEXITSTATUS(st));
              return 0;
            }
            """#, name: "forkpipe", in: dir)
        let (rec, _) = try Harness.roundTrip([exe], in: dir)
        #expect(rec.stdout.hasPrefix("child "))
        #expect(rec.stdout.hasSuffix(" | 1 5\n"))
    }

    @Test func forkExecOfASystemProgram() throws {
        let exe = try Harness.compile(#"""
            #include <stdio.h>
            #include <sys/wait.h>
            #include <unistd.h>
            int main(void) {
              int p[2]; pipe(p);
              if (fork() == 0) { dup2(p[1], 1); close(p[0]); close(p[1]);
                char *argv[] = {"date", "+%N", 0}, *envp[] = {"LC_ALL=C", 0}; execve("/bin/date", argv, envp); _exit(127); }
              close(p[1]); char b[64] = {0}; read(p[0], b, sizeof b - 1); int st; wait(&st);
              printf("date said %s", b); return WEXITSTATUS(st);
            }
            """#, name: "forkexec", in: dir)
        let (rec, _) = try Harness.roundTrip([exe], in: dir)
        #expect(rec.status == 0)
        #expect(rec.stdout.hasPrefix("date said "))
    }

    @Test func shellScriptWithPipeline() throws {
        let script = dir.appendingPathComponent("script.sh")
        try "#!/bin/sh\necho $$ | wc -c\nls / | head -n 2 >/dev/null && echo done\n".write(to: script, atomically: true, encoding: .utf8)
        chmod(script.path, 0o755)
        let (rec, _) = try Harness.roundTrip([script.path], in: dir)
        #expect(rec.status == 0)
        #expect(rec.stdout.hasSuffix("done\n"))
    }
}
