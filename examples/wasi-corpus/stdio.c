/* Standard streams: fd_read from stdin, fd_write to stdout and stderr, and every other
 * descriptor function on them (fdstat, filestat, seek, tell, pread, pwrite, sync, advise,
 * allocate, set_size, set_times, set_flags, set_rights, readdir, prestat, renumber, close). */
#include "corpus.h"

static void raw_write(uint32_t fd, const char *label, const ciovec_t *iovs, uint32_t n) {
    fflush(stdout);
    uint32_t written = SENTINEL;
    int32_t e = w_fd_write(fd, iovs, n, &written);
    printf("%s = %s n=%d\n", label, ename(e), written == SENTINEL ? -1 : (int)written);
}

int main(void) {
    section("writes");
    ciovec_t three[3] = {{(const uint8_t *)"a\n", 2}, {(const uint8_t *)"", 0}, {(const uint8_t *)"bc\n", 3}};
    raw_write(1, "fd_write(1, 3 iovecs)", three, 3);
    ciovec_t empty_first[2] = {{(const uint8_t *)"", 0}, {(const uint8_t *)"second\n", 7}};
    raw_write(1, "fd_write(1, empty then one)", empty_first, 2);
    raw_write(1, "fd_write(1, no iovecs)", three, 0);
    ciovec_t err[1] = {{(const uint8_t *)"to stderr\n", 10}};
    raw_write(2, "fd_write(2)", err, 1);
    raw_write(0, "fd_write(0)", err, 1);
    raw_write(99, "fd_write(99)", err, 1);

    section("stdin");
    /* Read everything in small pieces; chunk boundaries are the host's business, the bytes are not. */
    char all[4096];
    uint32_t total = 0, reads = 0;
    for (;;) {
        uint8_t piece[7];
        iovec_t iov[2] = {{piece, 0}, {piece, sizeof piece}};
        uint32_t n = SENTINEL;
        int32_t e = w_fd_read(0, iov, 2, &n);
        if (e) {
            printf("fd_read(0) = %s\n", ename(e));
            break;
        }
        if (n == 0) break;
        if (n > sizeof piece) printf("fd_read(0) returned %u > buffer\n", n);
        memcpy(all + total, piece, n);
        total += n;
        reads++;
        if (total > sizeof all - 16) break;
    }
    printf("stdin: %u bytes \"", total);
    for (uint32_t i = 0; i < total; i++) {
        unsigned char c = all[i];
        if (c >= 32 && c < 127 && c != '"' && c != '\\') putchar(c);
        else printf("\\x%02x", c);
    }
    printf("\" (%s)\n", reads ? "read" : "empty");
    read_case("fd_read(0) at end", 0, 10);
    read_case("fd_read(0) into nothing", 0, 0);
    read_case("fd_read(1)", 1, 10);
    read_case("fd_read(2)", 2, 10);

    section("fdstat and filestat");
    show_fdstat("0", 0);
    show_fdstat("1", 1);
    show_fdstat("2", 2);
    show_fdstat("99", 99);
    show_filestat("fd_filestat_get(0)", 0);
    show_filestat("fd_filestat_get(1)", 1);
    show_filestat("fd_filestat_get(2)", 2);

    section("positions");
    seek_case("fd_seek(0, 0, SET)", 0, 0, 0);
    seek_case("fd_seek(1, 0, CUR)", 1, 0, 1);
    tell_case("fd_tell(0)", 0);
    tell_case("fd_tell(2)", 2);
    uint8_t b[4];
    iovec_t iov = {b, sizeof b};
    uint32_t n = SENTINEL;
    CASE("fd_pread(0)", w_fd_pread(0, &iov, 1, 0, &n));
    CASE("fd_pread(1)", w_fd_pread(1, &iov, 1, 0, &n));
    ciovec_t ciov = {(const uint8_t *)"x", 1};
    CASE("fd_pwrite(1)", w_fd_pwrite(1, &ciov, 1, 0, &n));
    CASE("fd_pwrite(0)", w_fd_pwrite(0, &ciov, 1, 0, &n));
    printf("n untouched: %s\n", n == SENTINEL ? "yes" : "no");

    section("file operations on stdio");
    for (uint32_t fd = 0; fd < 3; fd++) {
        char label[64];
        printf("fd %u:\n", fd);
        snprintf(label, sizeof label, "  fd_sync");
        CASE(label, w_fd_sync(fd));
        snprintf(label, sizeof label, "  fd_datasync");
        CASE(label, w_fd_datasync(fd));
        snprintf(label, sizeof label, "  fd_advise");
        CASE(label, w_fd_advise(fd, 0, 0, 0));
        snprintf(label, sizeof label, "  fd_allocate");
        CASE(label, w_fd_allocate(fd, 0, 1));
        snprintf(label, sizeof label, "  fd_filestat_set_size");
        CASE(label, w_fd_filestat_set_size(fd, 0));
        snprintf(label, sizeof label, "  fd_filestat_set_times");
        CASE(label, w_fd_filestat_set_times(fd, 0, 0, ATIM_NOW));
        snprintf(label, sizeof label, "  fd_fdstat_set_flags(0)");
        CASE(label, w_fd_fdstat_set_flags(fd, 0));
        snprintf(label, sizeof label, "  fd_fdstat_set_flags(APPEND)");
        CASE(label, w_fd_fdstat_set_flags(fd, FL_APPEND));
        snprintf(label, sizeof label, "  fd_fdstat_set_rights");
        CASE(label, w_fd_fdstat_set_rights(fd, 0, 0));
        uint8_t dbuf[128];
        uint32_t used = SENTINEL;
        snprintf(label, sizeof label, "  fd_readdir");
        CASE(label, w_fd_readdir(fd, dbuf, sizeof dbuf, 0, &used));
        uint8_t pre[8];
        snprintf(label, sizeof label, "  fd_prestat_get");
        CASE(label, w_fd_prestat_get(fd, pre));
        snprintf(label, sizeof label, "  fd_prestat_dir_name");
        CASE(label, w_fd_prestat_dir_name(fd, dbuf, sizeof dbuf));
        uint32_t opened = SENTINEL;
        snprintf(label, sizeof label, "  path_open");
        CASE(label, w_path_open(fd, 0, P("x"), 0, R_READ, R_READ, 0, &opened));
        snprintf(label, sizeof label, "  path_create_directory");
        CASE(label, w_path_create_directory(fd, P("x")));
        filestat_t st;
        snprintf(label, sizeof label, "  path_filestat_get");
        CASE(label, w_path_filestat_get(fd, 0, P("x"), &st));
    }
    CASE("fd_filestat_set_times(1, bad flags)", w_fd_filestat_set_times(1, 0, 0, ATIM | ATIM_NOW));
    CASE("fd_fdstat_set_flags(99)", w_fd_fdstat_set_flags(99, 0));

    section("renumber and close");
    fflush(stdout);
    int32_t e = w_fd_renumber(1, 20);
    ciovec_t moved = {(const uint8_t *)"written to fd 20\n", 17};
    uint32_t w = 0;
    int32_t e20 = w_fd_write(20, &moved, 1, &w);
    int32_t e1 = w_fd_write(1, &moved, 1, &w);
    int32_t back = w_fd_renumber(20, 1);
    printf("fd_renumber(1, 20) = %s; fd_write(20) = %s; fd_write(1) = %s; fd_renumber(20, 1) = %s\n", ename(e),
           ename(e20), ename(e1), ename(back));
    show_fdstat("1 after renumbering back", 1);
    show_fdstat("20 after renumbering back", 20);
    fflush(stdout);
    e = w_fd_renumber(2, 1);
    ciovec_t via2 = {(const uint8_t *)"stderr's stream now at fd 1\n", 28};
    int32_t via = w_fd_write(1, &via2, 1, &w);
    int32_t e2 = w_fd_write(2, &via2, 1, &w);
    /* fd 1 is stderr's stream now: report through it, then close it. */
    char line[160];
    int len = snprintf(line, sizeof line, "fd_renumber(2, 1) = %s; fd_write(1) = %s; fd_write(2) = %s\n", ename(e),
                       ename(via), ename(e2));
    ciovec_t report = {(const uint8_t *)line, (uint32_t)len};
    w_fd_write(1, &report, 1, &w);
    CASE("fd_renumber(0, 0)", w_fd_renumber(0, 0));
    CASE("fd_renumber(99, 0)", w_fd_renumber(99, 0));
    CASE("fd_close(0)", w_fd_close(0));
    CASE("fd_close(0) again", w_fd_close(0));
    read_case("fd_read(0) after close", 0, 4);
    CASE("fd_renumber(5, 5) unused", w_fd_renumber(5, 5));
    fflush(stdout);
    return 0;
}
