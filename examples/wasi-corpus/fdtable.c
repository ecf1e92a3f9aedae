/* The descriptor table: which numbers new descriptors get, fd_renumber, fd_close of a
 * preopen, fd_prestat_get and fd_prestat_dir_name, and directories that outlive their preopen. */
#include "corpus.h"

static void prestat_case(const char *label, uint32_t fd) {
    struct { uint8_t tag; uint32_t len; } pre;
    memset(&pre, 0xab, sizeof pre);
    int32_t e = w_fd_prestat_get(fd, &pre);
    if (e) {
        printf("%s prestat = %s\n", label, ename(e));
        return;
    }
    char name[64];
    memset(name, 0, sizeof name);
    int32_t n = w_fd_prestat_dir_name(fd, (uint8_t *)name, pre.len);
    printf("%s prestat = OK tag=%u len=%u name=%s \"%s\"\n", label, pre.tag, pre.len, ename(n), name);
}

int main(void) {
    section("preopens");
    for (uint32_t fd = 0; fd < 7; fd++) {
        char label[16];
        snprintf(label, sizeof label, "fd %u", fd);
        prestat_case(label, fd);
    }
    char name[4];
    CASE("fd_prestat_dir_name(3) into 3 bytes", w_fd_prestat_dir_name(SANDBOX, (uint8_t *)name, 3));
    CASE("fd_prestat_dir_name(3) into 0 bytes", w_fd_prestat_dir_name(SANDBOX, (uint8_t *)name, 0));
    CASE("fd_prestat_dir_name(99)", w_fd_prestat_dir_name(99, (uint8_t *)name, 4));

    section("numbering");
    int32_t a = OPEN("open a", SANDBOX, "hello.txt", 0, R_READ, 0);
    int32_t b = OPEN("open b", SANDBOX, "empty.txt", 0, R_READ, 0);
    int32_t c = OPEN("open c", SANDBOX, "sub", O_DIRECTORY_, R_READ, 0);
    int32_t d = OPEN("open d", SANDBOX, "sub/inner.txt", 0, R_READ, 0);
    prestat_case("opened directory c", (uint32_t)c);
    CASE("close b", w_fd_close((uint32_t)b));
    CASE("close d", w_fd_close((uint32_t)d));
    int32_t e1 = OPEN("open e (reuses a closed number)", SANDBOX, "hello.txt", 0, R_READ, 0);
    int32_t e2 = OPEN("open f", SANDBOX, "hello.txt", 0, R_READ, 0);
    int32_t e3 = OPEN("open g", SANDBOX, "hello.txt", 0, R_READ, 0);
    CASE("close a", w_fd_close((uint32_t)a));
    CASE("close e", w_fd_close((uint32_t)e1));
    CASE("close f", w_fd_close((uint32_t)e2));
    OPEN("open h", SANDBOX, "hello.txt", 0, R_READ, 0);
    OPEN("open i", SANDBOX, "hello.txt", 0, R_READ, 0);
    OPEN("open j", SANDBOX, "hello.txt", 0, R_READ, 0);
    OPEN("open k", SANDBOX, "hello.txt", 0, R_READ, 0);
    CASE("close g", w_fd_close((uint32_t)e3));

    section("renumber");
    int32_t f1 = OPEN("open hello.txt", SANDBOX, "hello.txt", 0, R_READ, 0);
    int32_t f2 = OPEN("open empty.txt", SANDBOX, "empty.txt", 0, R_READ, 0);
    CASE("renumber hello over empty", w_fd_renumber((uint32_t)f1, (uint32_t)f2));
    read_case("read the renumbered descriptor", (uint32_t)f2, 5);
    read_case("read the old number", (uint32_t)f1, 5);
    CASE("renumber to an unused number 40", w_fd_renumber((uint32_t)f2, 40));
    read_case("read fd 40", 40, 5);
    CASE("renumber from a closed number", w_fd_renumber((uint32_t)f2, 41));
    CASE("renumber 40 onto itself", w_fd_renumber(40, 40));
    OPEN("open after renumbering to 40", SANDBOX, "hello.txt", 0, R_READ, 0);
    CASE("renumber 40 to 2^32-1", w_fd_renumber(40, 0xffffffffu));
    read_case("read fd 2^32-1", 0xffffffffu, 5);
    OPEN("open after 2^32-1", SANDBOX, "hello.txt", 0, R_READ, 0);
    CASE("close 2^32-1", w_fd_close(0xffffffffu));

    section("directories outlive their preopen");
    int32_t sub = OPEN("open sub", SANDBOX, "sub", O_DIRECTORY_, R_READ, 0);
    int32_t deeper = OPEN("open sub/deeper", SANDBOX, "sub/deeper", O_DIRECTORY_, R_READ, 0);
    CASE("renumber sub over the preopen (fd 3)", w_fd_renumber((uint32_t)sub, SANDBOX));
    prestat_case("fd 3 after renumbering", SANDBOX);
    int32_t inner = OPEN("open inner.txt in fd 3 (now sub)", SANDBOX, "inner.txt", 0, R_READ, 0);
    if (inner >= 0) read_case("  read", (uint32_t)inner, 64);
    OPEN("open hello.txt in fd 3 (now sub)", SANDBOX, "hello.txt", 0, R_READ, 0);
    OPEN("open ../hello.txt in fd 3 (now sub)", SANDBOX, "../hello.txt", 0, R_READ, 0);
    CASE("mkdir in sub/deeper (its preopen is gone)", w_path_create_directory((uint32_t)deeper, P("made")));
    STAT("stat made through fd 3", SANDBOX, 0, "deeper/made");
    CASE("close fd 3", w_fd_close(SANDBOX));
    CASE("mkdir in sub/deeper after closing fd 3", w_path_create_directory((uint32_t)deeper, P("made2")));
    int32_t back = OPEN("open .. from deeper", (uint32_t)deeper, "..", O_DIRECTORY_, R_READ, 0);
    OPEN("open ../.. from deeper", (uint32_t)deeper, "../..", O_DIRECTORY_, R_READ, 0);
    if (back >= 0) {
        int32_t again = OPEN("open inner.txt from there", (uint32_t)back, "inner.txt", 0, R_READ, 0);
        if (again >= 0) read_case("  read", (uint32_t)again, 64);
    }
    CASE("close the read-only preopen (fd 4)", w_fd_close(RO));
    prestat_case("fd 4 after close", RO);
    OPEN("open in fd 4 after close", RO, "data.txt", 0, R_READ, 0);
    int32_t reuse = OPEN("open reuses a preopen's number", (uint32_t)deeper, "made", O_DIRECTORY_, R_READ, 0);
    prestat_case("reused number", (uint32_t)(reuse < 0 ? 99 : reuse));
    fflush(stdout);
    CASE("close 1 (stdout)", w_fd_close(1));
    int32_t last = OPEN("open after closing stdout", (uint32_t)deeper, "made", O_DIRECTORY_, R_READ, 0);
    /* stdout is gone: report the last number through stderr's descriptor. */
    fflush(stdout);
    char line[64];
    int len = snprintf(line, sizeof line, "last opened fd=%d\n", last);
    ciovec_t iov = {(const uint8_t *)line, (uint32_t)len};
    uint32_t n;
    w_fd_write(2, &iov, 1, &n);
    return 0;
}
