/* Regular files: path_open modes and flags, fd_read/fd_write/fd_pread/fd_pwrite, fd_seek/fd_tell,
 * append, truncation, fd_filestat_get/set_size, fd_fdstat_get/set_flags/set_rights, fd_advise,
 * fd_allocate, fd_sync, fd_datasync, and reading or writing against the open mode. */
#include "corpus.h"

static void pread_case(const char *label, uint32_t fd, uint64_t offset, uint32_t max) {
    uint8_t buf[64];
    iovec_t iov[2] = {{buf, 0}, {buf, max}};
    uint32_t n = SENTINEL;
    int32_t e = w_fd_pread(fd, iov, 2, offset, &n);
    if (e) {
        printf("%s = %s\n", label, ename(e));
        return;
    }
    printf("%s = OK n=%u \"%.*s\"\n", label, n, (int)n, buf);
}

static void pwrite_case(const char *label, uint32_t fd, uint64_t offset, const char *text) {
    ciovec_t iov[2] = {{(const uint8_t *)text, (uint32_t)strlen(text)}, {(const uint8_t *)"IGNORED", 7}};
    uint32_t n = SENTINEL;
    int32_t e = w_fd_pwrite(fd, iov, 2, offset, &n);
    if (e) printf("%s = %s\n", label, ename(e));
    else printf("%s = OK n=%u\n", label, n);
}

int main(void) {
    section("reading");
    int32_t fd = OPEN("open hello.txt read-only", SANDBOX, "hello.txt", 0, R_READ, 0);
    show_fdstat("hello.txt", (uint32_t)fd);
    show_filestat("fd_filestat_get(hello.txt)", (uint32_t)fd);
    read_case("fd_read 5", (uint32_t)fd, 5);
    tell_case("fd_tell", (uint32_t)fd);
    read_case("fd_read rest", (uint32_t)fd, 100);
    read_case("fd_read at end", (uint32_t)fd, 100);
    seek_case("fd_seek(-6, END)", (uint32_t)fd, -6, 2);
    read_case("fd_read after seek", (uint32_t)fd, 100);
    seek_case("fd_seek(2, SET)", (uint32_t)fd, 2, 0);
    seek_case("fd_seek(3, CUR)", (uint32_t)fd, 3, 1);
    seek_case("fd_seek(-1, SET)", (uint32_t)fd, -1, 0);
    seek_case("fd_seek(-100, CUR)", (uint32_t)fd, -100, 1);
    seek_case("fd_seek(-100, END)", (uint32_t)fd, -100, 2);
    seek_case("fd_seek(1000, SET)", (uint32_t)fd, 1000, 0);
    read_case("fd_read past the end", (uint32_t)fd, 10);
    tell_case("fd_tell past the end", (uint32_t)fd);
    pread_case("fd_pread(0)", (uint32_t)fd, 0, 5);
    pread_case("fd_pread(7)", (uint32_t)fd, 7, 64);
    pread_case("fd_pread(500)", (uint32_t)fd, 500, 8);
    tell_case("fd_tell after preads", (uint32_t)fd);
    write_case("fd_write to a read-only descriptor", (uint32_t)fd, "nope");
    pwrite_case("fd_pwrite to a read-only descriptor", (uint32_t)fd, 0, "nope");
    CASE("fd_filestat_set_size on a read-only descriptor", w_fd_filestat_set_size((uint32_t)fd, 1));
    CASE("fd_sync", w_fd_sync((uint32_t)fd));
    CASE("fd_datasync", w_fd_datasync((uint32_t)fd));
    for (uint32_t advice = 0; advice < 6; advice++) {
        char label[48];
        snprintf(label, sizeof label, "fd_advise(advice %u)", advice);
        CASE(label, w_fd_advise((uint32_t)fd, 0, 10, advice));
    }
    CASE("fd_advise(offset past end, huge length)", w_fd_advise((uint32_t)fd, 1000, ~0ull, 0));
    CASE("fd_allocate", w_fd_allocate((uint32_t)fd, 0, 100));
    CASE("fd_close", w_fd_close((uint32_t)fd));
    read_case("fd_read after close", (uint32_t)fd, 10);

    section("writing");
    fd = OPEN("create new.txt write-only", SANDBOX, "new.txt", O_CREAT_, R_FD_WRITE | R_FD_SEEK | R_FD_TELL, 0);
    show_fdstat("new.txt", (uint32_t)fd);
    write_case("fd_write", (uint32_t)fd, "0123456789");
    tell_case("fd_tell", (uint32_t)fd);
    read_case("fd_read from a write-only descriptor", (uint32_t)fd, 10);
    pread_case("fd_pread from a write-only descriptor", (uint32_t)fd, 0, 10);
    pwrite_case("fd_pwrite(3)", (uint32_t)fd, 3, "abc");
    tell_case("fd_tell after pwrite", (uint32_t)fd);
    pwrite_case("fd_pwrite(20) leaves a hole", (uint32_t)fd, 20, "end");
    seek_case("fd_seek(30, SET)", (uint32_t)fd, 30, 0);
    write_case("fd_write after seeking past the end", (uint32_t)fd, "!");
    show_filestat("fd_filestat_get", (uint32_t)fd);
    CASE("fd_filestat_set_size(5)", w_fd_filestat_set_size((uint32_t)fd, 5));
    show_filestat("fd_filestat_get after shrinking", (uint32_t)fd);
    tell_case("fd_tell after shrinking", (uint32_t)fd);
    CASE("fd_filestat_set_size(12)", w_fd_filestat_set_size((uint32_t)fd, 12));
    show_filestat("fd_filestat_get after growing", (uint32_t)fd);
    CASE("fd_filestat_set_size(2^63)", w_fd_filestat_set_size((uint32_t)fd, 1ull << 63));
    CASE("fd_allocate", w_fd_allocate((uint32_t)fd, 0, 100));
    CASE("fd_close", w_fd_close((uint32_t)fd));
    OPEN("create new.txt again with EXCL", SANDBOX, "new.txt", O_CREAT_ | O_EXCL_, R_RW, 0);
    OPEN("EXCL without CREAT on an existing file", SANDBOX, "new.txt", O_EXCL_, R_RW, 0);
    OPEN("open a missing file without CREAT", SANDBOX, "missing.txt", 0, R_READ, 0);
    OPEN("TRUNC without write rights", SANDBOX, "hello.txt", O_TRUNC_, R_READ, 0);
    fd = OPEN("open new.txt read-write with TRUNC", SANDBOX, "new.txt", O_TRUNC_, R_RW, 0);
    show_filestat("after TRUNC", (uint32_t)fd);
    write_case("fd_write", (uint32_t)fd, "fresh");
    seek_case("rewind", (uint32_t)fd, 0, 0);
    read_case("fd_read back", (uint32_t)fd, 100);
    w_fd_close((uint32_t)fd);

    section("append");
    fd = OPEN("open log.txt APPEND", SANDBOX, "log.txt", O_CREAT_, R_RW, FL_APPEND);
    show_fdstat("log.txt", (uint32_t)fd);
    write_case("fd_write", (uint32_t)fd, "one\n");
    seek_case("fd_seek(0, SET)", (uint32_t)fd, 0, 0);
    write_case("fd_write after seeking to 0", (uint32_t)fd, "two\n");
    tell_case("fd_tell", (uint32_t)fd);
    pwrite_case("fd_pwrite(0) in append mode", (uint32_t)fd, 0, "three\n");
    tell_case("fd_tell after pwrite", (uint32_t)fd);
    CASE("fd_fdstat_set_flags(0)", w_fd_fdstat_set_flags((uint32_t)fd, 0));
    show_fdstat("log.txt without APPEND", (uint32_t)fd);
    seek_case("fd_seek(0, SET)", (uint32_t)fd, 0, 0);
    write_case("fd_write at 0", (uint32_t)fd, "ONE\n");
    CASE("fd_fdstat_set_flags(APPEND|NONBLOCK)", w_fd_fdstat_set_flags((uint32_t)fd, FL_APPEND | FL_NONBLOCK));
    show_fdstat("log.txt with APPEND|NONBLOCK", (uint32_t)fd);
    write_case("fd_write", (uint32_t)fd, "four\n");
    CASE("fd_fdstat_set_flags(SYNC)", w_fd_fdstat_set_flags((uint32_t)fd, FL_SYNC));
    CASE("fd_fdstat_set_flags(DSYNC)", w_fd_fdstat_set_flags((uint32_t)fd, FL_DSYNC));
    CASE("fd_fdstat_set_flags(RSYNC)", w_fd_fdstat_set_flags((uint32_t)fd, FL_RSYNC));
    show_fdstat("log.txt after refused flags", (uint32_t)fd);
    w_fd_close((uint32_t)fd);

    section("open flags and rights");
    struct { const char *label; uint64_t rights; uint32_t fdflags; } modes[] = {
        {"no rights", 0, 0},
        {"read", R_FD_READ, 0},
        {"write", R_FD_WRITE, 0},
        {"read+write", R_FD_READ | R_FD_WRITE, 0},
        {"all rights", R_ALL, 0},
        {"readdir only", R_FD_READDIR, 0},
        {"set_size only", R_FD_FILESTAT_SET_SIZE, 0},
        {"read SYNC", R_FD_READ, FL_SYNC},
        {"write DSYNC", R_FD_WRITE, FL_DSYNC},
        {"read RSYNC", R_FD_READ, FL_RSYNC},
        {"read NONBLOCK", R_FD_READ, FL_NONBLOCK},
        {"write APPEND", R_FD_WRITE, FL_APPEND},
    };
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        char label[80];
        snprintf(label, sizeof label, "open hello.txt %s", modes[i].label);
        fd = open_case(label, SANDBOX, 0, P("hello.txt"), 0, modes[i].rights, modes[i].fdflags);
        if (fd < 0) continue;
        show_fdstat(label, (uint32_t)fd);
        read_case("  fd_read", (uint32_t)fd, 5);
        CASE("  fd_filestat_set_size(13)", w_fd_filestat_set_size((uint32_t)fd, 13));
        w_fd_close((uint32_t)fd);
    }
    int32_t e;

    section("rights are not enforced beyond the open mode");
    fd = OPEN("open hello.txt read+write", SANDBOX, "hello.txt", 0, R_RW, 0);
    CASE("fd_fdstat_set_rights(read only)", w_fd_fdstat_set_rights((uint32_t)fd, R_FD_READ, 0));
    show_fdstat("after set_rights", (uint32_t)fd);
    CASE("fd_fdstat_set_rights(more than before)", w_fd_fdstat_set_rights((uint32_t)fd, R_ALL, R_ALL));
    write_case("fd_write after dropping the write right", (uint32_t)fd, "HELLO");
    CASE("fd_filestat_set_size(20) after dropping the right", w_fd_filestat_set_size((uint32_t)fd, 20));
    show_filestat("hello.txt", (uint32_t)fd);
    CASE("fd_fdstat_set_rights(99)", w_fd_fdstat_set_rights(99, 0, 0));
    CASE("fd_fdstat_set_rights(preopen)", w_fd_fdstat_set_rights(SANDBOX, 0, 0));
    w_fd_close((uint32_t)fd);

    section("many iovecs");
    fd = OPEN("open multi.txt", SANDBOX, "multi.txt", O_CREAT_, R_RW, 0);
    ciovec_t parts[3] = {{(const uint8_t *)"", 0}, {(const uint8_t *)"first", 5}, {(const uint8_t *)"second", 6}};
    uint32_t n = SENTINEL;
    e = w_fd_write((uint32_t)fd, parts, 3, &n);
    printf("fd_write(3 iovecs) = %s n=%u\n", ename(e), n);
    seek_case("rewind", (uint32_t)fd, 0, 0);
    uint8_t a[3], b[10];
    iovec_t into[2] = {{a, sizeof a}, {b, sizeof b}};
    n = SENTINEL;
    e = w_fd_read((uint32_t)fd, into, 2, &n);
    printf("fd_read(2 iovecs) = %s n=%u first=\"%.3s\"\n", ename(e), n, a);
    w_fd_close((uint32_t)fd);

    section("directories are not files");
    fd = OPEN("open sub", SANDBOX, "sub", O_DIRECTORY_, R_READ, 0);
    read_case("fd_read(dir)", (uint32_t)fd, 10);
    write_case("fd_write(dir)", (uint32_t)fd, "x");
    pread_case("fd_pread(dir)", (uint32_t)fd, 0, 10);
    pwrite_case("fd_pwrite(dir)", (uint32_t)fd, 0, "x");
    seek_case("fd_seek(dir)", (uint32_t)fd, 0, 0);
    tell_case("fd_tell(dir)", (uint32_t)fd);
    CASE("fd_filestat_set_size(dir)", w_fd_filestat_set_size((uint32_t)fd, 0));
    CASE("fd_allocate(dir)", w_fd_allocate((uint32_t)fd, 0, 1));
    CASE("fd_advise(dir)", w_fd_advise((uint32_t)fd, 0, 1, 0));
    CASE("fd_sync(dir)", w_fd_sync((uint32_t)fd));
    CASE("fd_datasync(dir)", w_fd_datasync((uint32_t)fd));
    CASE("fd_fdstat_set_flags(dir)", w_fd_fdstat_set_flags((uint32_t)fd, 0));
    CASE("fd_fdstat_set_rights(dir)", w_fd_fdstat_set_rights((uint32_t)fd, 0, 0));
    CASE("fd_allocate(preopen)", w_fd_allocate(SANDBOX, 0, 1));
    CASE("fd_sync(preopen)", w_fd_sync(SANDBOX));
    seek_case("fd_seek(preopen)", SANDBOX, 0, 0);
    CASE("fd_allocate(99)", w_fd_allocate(99, 0, 1));
    w_fd_close((uint32_t)fd);
    return 0;
}
