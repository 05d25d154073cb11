import Foundation
import Testing

/// The vDSO: detrec gives the program none (no AT_SYSINFO_EHDR, no
/// [vdso] mapping), so every clock read is a syscall it records. A
/// program that walks the vDSO's ELF symbols as Go's runtime and
/// parse_vdso.c do finds no vDSO and falls back to the syscalls; glibc,
/// static and dynamic, does the same.
@Suite(.serialized) struct VDSOTests {
    let dir = Harness.temporaryDirectory()

    static let source = #"""
        #define _GNU_SOURCE
        #include <elf.h>
        #include <link.h>
        #include <sched.h>
        #include <stdio.h>
        #include <string.h>
        #include <sys/auxv.h>
        #include <sys/time.h>
        #include <time.h>
        /* Finds a symbol in the vDSO the way Go's runtime and Linux's
           tools/testing/selftests/vDSO/parse_vdso.c do: program headers, the
           dynamic section, DT_HASH or DT_GNU_HASH, the symbol table, versions. */
        static void *vdso_sym(unsigned long base, const char *name, const char *version) {
          Elf64_Ehdr *eh = (Elf64_Ehdr *)base;
          if (memcmp(eh->e_ident, ELFMAG, SELFMAG)) return 0;
          Elf64_Phdr *ph = (Elf64_Phdr *)(base + eh->e_phoff);
          Elf64_Dyn *dyn = 0; long bias = 0; int found_load = 0;
          for (int i = 0; i < eh->e_phnum; i++) {
            if (ph[i].p_type == PT_LOAD && !found_load) { found_load = 1; bias = base + ph[i].p_offset - ph[i].p_vaddr; }
            if (ph[i].p_type == PT_DYNAMIC) dyn = (Elf64_Dyn *)(base + ph[i].p_offset);
          }
          if (!found_load || !dyn) return 0;
          Elf64_Sym *symtab = 0; const char *strtab = 0; Elf32_Word *hash = 0; Elf64_Versym *versym = 0; Elf64_Verdef *verdef = 0;
          for (; dyn->d_tag != DT_NULL; dyn++) {
            switch (dyn->d_tag) {
            case DT_SYMTAB: symtab = (Elf64_Sym *)(dyn->d_un.d_ptr + bias); break;
            case DT_STRTAB: strtab = (const char *)(dyn->d_un.d_ptr + bias); break;
            case DT_HASH: hash = (Elf32_Word *)(dyn->d_un.d_ptr + bias); break;
            case DT_VERSYM: versym = (Elf64_Versym *)(dyn->d_un.d_ptr + bias); break;
            case DT_VERDEF: verdef = (Elf64_Verdef *)(dyn->d_un.d_ptr + bias); break;
            }
          }
          if (!symtab || !strtab || !hash) return 0;
          Elf32_Word nchain = hash[1];
          for (Elf32_Word i = 0; i < nchain; i++) {
            Elf64_Sym *s = &symtab[i];
            if (ELF64_ST_TYPE(s->st_info) != STT_FUNC || s->st_shndx == SHN_UNDEF) continue;
            if (strcmp(strtab + s->st_name, name)) continue;
            if (versym && verdef) {
              Elf64_Verdef *d = verdef; int ok = 0;
              while (1) {
                if (!(d->vd_flags & VER_FLG_BASE) && (d->vd_ndx & 0x7fff) == (versym[i] & 0x7fff)) {
                  Elf64_Verdaux *aux = (Elf64_Verdaux *)((char *)d + d->vd_aux);
                  ok = !strcmp(strtab + aux->vda_name, version);
                  break;
                }
                if (!d->vd_next) break;
                d = (Elf64_Verdef *)((char *)d + d->vd_next);
              }
              if (!ok) continue;
            }
            return (void *)(s->st_value + bias);
          }
          return 0;
        }
        int main(void) {
          unsigned long base = getauxval(AT_SYSINFO_EHDR);
          struct timespec ts = {0};
          int (*vgettime)(clockid_t, struct timespec *) = base ? vdso_sym(base, "__vdso_clock_gettime", "LINUX_2.6") : 0;
          int rc = vgettime ? vgettime(CLOCK_MONOTONIC, &ts) : clock_gettime(CLOCK_MONOTONIC, &ts);
          printf("clock_gettime through %s: %d %d\n", base ? "a walk of the vDSO" : "the syscall", rc, ts.tv_sec > 0 || ts.tv_nsec > 0);
          struct timeval tv; time_t t = time(0);
          printf("gettimeofday %d time %d getcpu %d\n", gettimeofday(&tv, 0), t > 0, sched_getcpu() >= 0);
          struct timespec res; clock_getres(CLOCK_MONOTONIC, &res);
          printf("resolution %ld ns\n", res.tv_nsec);
          return 0;
        }
        """#

    @Test(arguments: [["-static"], []]) func programsFallBackToTheSyscalls(flags: [String]) throws {
        let exe = try Harness.compile(VDSOTests.source, name: "vdso\(flags.count)", flags: flags, in: dir)
        let native = try Harness.run([exe])
        let (rec, trace) = try Harness.roundTrip([exe], in: dir)
        #expect(rec.status == 0 && native.status == 0)
        // Natively the walk finds __vdso_clock_gettime; in the recording there is no vDSO.
        let lines = rec.stdout.split(separator: "\n")
        #expect(lines.first == "clock_gettime through the syscall: 0 1")
        #expect(lines.dropFirst() == native.stdout.split(separator: "\n").dropFirst())
        let names = try Harness.dumpJSON(trace).compactMap { $0["name"] as? String }
        for call in ["clock_gettime", "gettimeofday", "time", "getcpu", "clock_getres"] {
            #expect(names.contains(call), "\(call) is not in the trace")
        }
    }

    @Test func noVDSOInTheAuxiliaryVectorOrTheMaps() throws {
        let out = try Harness.matchesNative(#"""
            #include <stdio.h>
            #include <string.h>
            #include <sys/auxv.h>
            int main(void) {
              char line[512]; int vdso = 0;
              FILE *f = fopen("/proc/self/maps", "r");
              while (fgets(line, sizeof line, f)) if (strstr(line, "[vdso]")) vdso = 1;
              printf("%s\n", (getauxval(AT_SYSINFO_EHDR) != 0) == vdso ? "consistent" : "inconsistent");
              return 0;
            }
            """#, name: "vdsomaps", in: dir)
        #expect(out == "consistent\n")
    }
}
