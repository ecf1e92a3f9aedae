/* Timestamps: fd_filestat_set_times and path_filestat_set_times, explicit and "now",
 * their flag checks, on files, directories, links (followed or not), and the read-only grant. */
#include "corpus.h"

#define T1 1000000000123456789ull
#define T2 1500000000987654321ull

static void times_of(const char *label, uint32_t dir, uint32_t flags, const char *path, uint32_t len) {
    filestat_t st;
    int32_t e = w_path_filestat_get(dir, flags, path, len, &st);
    if (e) {
        printf("%s = %s\n", label, ename(e));
        return;
    }
    printf("%s = atim %llu mtim %llu\n", label, (unsigned long long)st.atim, (unsigned long long)st.mtim);
}
#define TIMES(label, dir, flags, path) times_of(label, dir, flags, P(path))

int main(void) {
    section("path_filestat_set_times");
    CASE("set both on hello.txt", w_path_filestat_set_times(SANDBOX, 0, P("hello.txt"), T1, T2, ATIM | MTIM));
    TIMES("hello.txt", SANDBOX, 0, "hello.txt");
    CASE("set atim only", w_path_filestat_set_times(SANDBOX, 0, P("hello.txt"), T2, 0, ATIM));
    TIMES("hello.txt", SANDBOX, 0, "hello.txt");
    CASE("set mtim only", w_path_filestat_set_times(SANDBOX, 0, P("hello.txt"), 0, T1, MTIM));
    TIMES("hello.txt", SANDBOX, 0, "hello.txt");
    CASE("set nothing", w_path_filestat_set_times(SANDBOX, 0, P("hello.txt"), 5, 5, 0));
    TIMES("hello.txt", SANDBOX, 0, "hello.txt");
    CASE("ATIM with ATIM_NOW", w_path_filestat_set_times(SANDBOX, 0, P("hello.txt"), T1, T1, ATIM | ATIM_NOW));
    CASE("MTIM with MTIM_NOW", w_path_filestat_set_times(SANDBOX, 0, P("hello.txt"), T1, T1, MTIM | MTIM_NOW));
    TIMES("hello.txt unchanged", SANDBOX, 0, "hello.txt");
    CASE("set times on sub", w_path_filestat_set_times(SANDBOX, 0, P("sub"), T1, T1, ATIM | MTIM));
    TIMES("sub", SANDBOX, 0, "sub");
    CASE("set times on link-hello, following", w_path_filestat_set_times(SANDBOX, FOLLOW, P("link-hello"), T2, T2, ATIM | MTIM));
    TIMES("hello.txt after the followed link", SANDBOX, 0, "hello.txt");
    CASE("set times on link-hello itself", w_path_filestat_set_times(SANDBOX, 0, P("link-hello"), T1, T1, ATIM | MTIM));
    TIMES("link-hello itself", SANDBOX, 0, "link-hello");
    TIMES("hello.txt", SANDBOX, 0, "hello.txt");
    CASE("set times on link-escape, following", w_path_filestat_set_times(SANDBOX, FOLLOW, P("link-escape"), T1, T1, ATIM | MTIM));
    CASE("set times on link-dangling, following", w_path_filestat_set_times(SANDBOX, FOLLOW, P("link-dangling"), T1, T1, ATIM | MTIM));
    CASE("set times on missing", w_path_filestat_set_times(SANDBOX, 0, P("missing"), T1, T1, ATIM | MTIM));
    CASE("set times on hello.txt/", w_path_filestat_set_times(SANDBOX, 0, P("hello.txt/"), T1, T1, ATIM | MTIM));
    CASE("set times on ../outside.txt", w_path_filestat_set_times(SANDBOX, 0, P("../outside.txt"), T1, T1, ATIM | MTIM));
    CASE("set times on the empty path", w_path_filestat_set_times(SANDBOX, 0, P(""), T1, T1, ATIM | MTIM));
    CASE("set times on .", w_path_filestat_set_times(SANDBOX, 0, P("."), T1, T1, ATIM | MTIM));
    TIMES(".", SANDBOX, 0, ".");
    CASE("set times in the read-only grant", w_path_filestat_set_times(RO, 0, P("data.txt"), T1, T1, ATIM | MTIM));
    CASE("set times from fd 1", w_path_filestat_set_times(1, 0, P("hello.txt"), T1, T1, ATIM | MTIM));
    uint64_t before = 0;
    w_clock_time_get(0, 0, &before);
    CASE("set both to now", w_path_filestat_set_times(SANDBOX, 0, P("empty.txt"), 0, 0, ATIM_NOW | MTIM_NOW));
    filestat_t st;
    w_path_filestat_get(SANDBOX, 0, P("empty.txt"), &st);
    printf("now is recent: %s\n", st.mtim + 5000000000ull >= before && st.atim + 5000000000ull >= before ? "yes" : "no");

    section("fd_filestat_set_times");
    int32_t fd = OPEN("open hello.txt read-only", SANDBOX, "hello.txt", 0, R_READ, 0);
    CASE("set both through a read-only descriptor", w_fd_filestat_set_times((uint32_t)fd, T1, T2, ATIM | MTIM));
    TIMES("hello.txt", SANDBOX, 0, "hello.txt");
    CASE("ATIM with ATIM_NOW", w_fd_filestat_set_times((uint32_t)fd, T1, T1, ATIM | ATIM_NOW));
    CASE("MTIM with MTIM_NOW", w_fd_filestat_set_times((uint32_t)fd, T1, T1, MTIM | MTIM_NOW));
    CASE("nothing", w_fd_filestat_set_times((uint32_t)fd, 1, 1, 0));
    filestat_t fst;
    w_fd_filestat_get((uint32_t)fd, &fst);
    printf("fd_filestat_get: atim %llu mtim %llu\n", (unsigned long long)fst.atim, (unsigned long long)fst.mtim);
    int32_t dir = OPEN("open sub", SANDBOX, "sub", O_DIRECTORY_, R_READ, 0);
    CASE("set times on a directory descriptor", w_fd_filestat_set_times((uint32_t)dir, T2, T1, ATIM | MTIM));
    TIMES("sub", SANDBOX, 0, "sub");
    CASE("set times on the preopen", w_fd_filestat_set_times(SANDBOX, T2, T2, ATIM | MTIM));
    TIMES(".", SANDBOX, 0, ".");
    CASE("set times on the read-only preopen", w_fd_filestat_set_times(RO, T2, T2, ATIM | MTIM));
    int32_t rofile = OPEN("open ro data.txt", RO, "data.txt", 0, R_READ, 0);
    CASE("set times on a read-only grant's file", w_fd_filestat_set_times((uint32_t)rofile, T2, T2, ATIM | MTIM));
    CASE("set times on fd 99", w_fd_filestat_set_times(99, T2, T2, ATIM | MTIM));
    CASE("set times on fd 99 with bad flags", w_fd_filestat_set_times(99, T2, T2, ATIM | ATIM_NOW));
    CASE("set huge times", w_fd_filestat_set_times((uint32_t)fd, ~0ull, ~0ull, ATIM | MTIM));
    w_fd_filestat_get((uint32_t)fd, &fst);
    printf("after huge times: atim %llu mtim %llu\n", (unsigned long long)fst.atim, (unsigned long long)fst.mtim);
    return 0;
}
