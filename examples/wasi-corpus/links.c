/* Links: path_symlink, path_readlink, path_link, and links met while resolving paths
 * (followed or not, inside the grant, escaping it, dangling, looping). */
#include "corpus.h"

static void readlink_case(const char *label, uint32_t dir, const char *path, uint32_t len, uint32_t size) {
    uint8_t buf[64];
    memset(buf, '#', sizeof buf);
    uint32_t used = SENTINEL;
    int32_t e = w_path_readlink(dir, path, len, buf, size, &used);
    if (e) printf("%s = %s\n", label, ename(e));
    else printf("%s = OK used=%u \"%.*s\" next byte %s\n", label, used, (int)used, buf, buf[used] == '#' ? "untouched" : "written");
}
#define READLINK(label, dir, path, size) readlink_case(label, dir, P(path), size)

int main(void) {
    section("symlink");
    CASE("symlink rel -> hello.txt", w_path_symlink(P("hello.txt"), SANDBOX, P("rel")));
    CASE("symlink again", w_path_symlink(P("hello.txt"), SANDBOX, P("rel")));
    CASE("symlink sub/rel2 -> ../hello.txt", w_path_symlink(P("../hello.txt"), SANDBOX, P("sub/rel2")));
    CASE("symlink to a missing target", w_path_symlink(P("nowhere"), SANDBOX, P("dangling2")));
    CASE("symlink escaping", w_path_symlink(P("../outside.txt"), SANDBOX, P("escape2")));
    CASE("symlink absolute", w_path_symlink(P("/etc/passwd"), SANDBOX, P("abs2")));
    CASE("symlink with an empty target", w_path_symlink(P(""), SANDBOX, P("empty-target")));
    CASE("symlink at an empty path", w_path_symlink(P("x"), SANDBOX, P("")));
    CASE("symlink over a file", w_path_symlink(P("x"), SANDBOX, P("empty.txt")));
    CASE("symlink over a directory", w_path_symlink(P("x"), SANDBOX, P("sub")));
    CASE("symlink at new/ (trailing slash)", w_path_symlink(P("hello.txt"), SANDBOX, P("slash/")));
    CASE("symlink in a missing directory", w_path_symlink(P("x"), SANDBOX, P("missing/link")));
    CASE("symlink outside the grant", w_path_symlink(P("x"), SANDBOX, P("../link-outside")));
    CASE("symlink in the read-only grant", w_path_symlink(P("x"), RO, P("ro-link")));
    CASE("symlink from a file descriptor", w_path_symlink(P("x"), 1, P("y")));
    CASE("symlink to a directory", w_path_symlink(P("sub"), SANDBOX, P("to-sub")));

    section("readlink");
    READLINK("readlink rel", SANDBOX, "rel", 64);
    READLINK("readlink rel, 4 bytes", SANDBOX, "rel", 4);
    READLINK("readlink rel, 0 bytes", SANDBOX, "rel", 0);
    READLINK("readlink sub/rel2", SANDBOX, "sub/rel2", 64);
    READLINK("readlink escape2", SANDBOX, "escape2", 64);
    READLINK("readlink abs2", SANDBOX, "abs2", 64);
    READLINK("readlink empty-target", SANDBOX, "empty-target", 64);
    READLINK("readlink a file", SANDBOX, "hello.txt", 64);
    READLINK("readlink a directory", SANDBOX, "sub", 64);
    READLINK("readlink missing", SANDBOX, "missing", 64);
    READLINK("readlink rel/", SANDBOX, "rel/", 64);
    READLINK("readlink to-sub/", SANDBOX, "to-sub/", 64);
    READLINK("readlink link-chain through a link", SANDBOX, "link-sub/link-chain", 64);
    READLINK("readlink ro link-data", RO, "link-data", 64);

    section("following");
    int32_t fd = open_case("open rel, following", SANDBOX, FOLLOW, P("rel"), 0, R_READ, 0);
    if (fd >= 0) read_case("  read", (uint32_t)fd, 64);
    open_case("open rel, not following", SANDBOX, 0, P("rel"), 0, R_READ, 0);
    fd = open_case("open sub/rel2, following", SANDBOX, FOLLOW, P("sub/rel2"), 0, R_READ, 0);
    if (fd >= 0) read_case("  read", (uint32_t)fd, 64);
    open_case("open escape2, following", SANDBOX, FOLLOW, P("escape2"), 0, R_READ, 0);
    open_case("open abs2, following", SANDBOX, FOLLOW, P("abs2"), 0, R_READ, 0);
    open_case("open dangling2, following", SANDBOX, FOLLOW, P("dangling2"), 0, R_READ, 0);
    open_case("open empty-target, following", SANDBOX, FOLLOW, P("empty-target"), 0, R_READ, 0);
    fd = open_case("open to-sub/inner.txt (link in the middle)", SANDBOX, 0, P("to-sub/inner.txt"), 0, R_READ, 0);
    if (fd >= 0) read_case("  read", (uint32_t)fd, 64);
    open_case("open to-sub, not following, DIRECTORY", SANDBOX, 0, P("to-sub"), O_DIRECTORY_, R_READ, 0);
    fd = open_case("open to-sub, following, DIRECTORY", SANDBOX, FOLLOW, P("to-sub"), O_DIRECTORY_, R_READ, 0);
    if (fd >= 0) {
        int32_t inner = open_case("  open inner.txt below it", (uint32_t)fd, 0, P("inner.txt"), 0, R_READ, 0);
        if (inner >= 0) read_case("  read", (uint32_t)inner, 64);
        open_case("  open ../hello.txt below it", (uint32_t)fd, 0, P("../hello.txt"), 0, R_READ, 0);
        open_case("  open ../../outside.txt below it", (uint32_t)fd, 0, P("../../outside.txt"), 0, R_READ, 0);
        open_case("  open link-up below it, following", (uint32_t)fd, FOLLOW, P("link-up"), 0, R_READ, 0);
    }
    write_case("write through rel", (uint32_t)open_case("open rel for writing, following", SANDBOX, FOLLOW, P("rel"), 0, R_RW, FL_APPEND), "appended\n");
    STAT("stat rel", SANDBOX, 0, "rel");
    STAT("stat -L rel", SANDBOX, FOLLOW, "rel");
    STAT("stat -L escape2", SANDBOX, FOLLOW, "escape2");
    STAT("stat -L abs2", SANDBOX, FOLLOW, "abs2");
    STAT("stat -L link-loop", SANDBOX, FOLLOW, "link-loop");
    STAT("stat link-loop", SANDBOX, 0, "link-loop");
    STAT("stat link-loop/x", SANDBOX, 0, "link-loop/x");
    STAT("stat -L sub/link-chain", SANDBOX, FOLLOW, "sub/link-chain");
    STAT("stat -L ro link-data", RO, FOLLOW, "link-data");

    section("hard links");
    CASE("link hello.txt -> hard.txt", w_path_link(SANDBOX, 0, P("hello.txt"), SANDBOX, P("hard.txt")));
    STAT("stat hard.txt", SANDBOX, 0, "hard.txt");
    filestat_t a, b;
    w_path_filestat_get(SANDBOX, 0, P("hello.txt"), &a);
    w_path_filestat_get(SANDBOX, 0, P("hard.txt"), &b);
    printf("same file: %s\n", a.ino == b.ino ? "yes" : "no");
    CASE("link again (exists)", w_path_link(SANDBOX, 0, P("hello.txt"), SANDBOX, P("hard.txt")));
    CASE("link a directory", w_path_link(SANDBOX, 0, P("sub"), SANDBOX, P("sub-link")));
    CASE("link a missing file", w_path_link(SANDBOX, 0, P("missing"), SANDBOX, P("m2")));
    CASE("link into sub", w_path_link(SANDBOX, 0, P("hello.txt"), SANDBOX, P("sub/hard2.txt")));
    CASE("link a symlink, not following", w_path_link(SANDBOX, 0, P("rel"), SANDBOX, P("rel-hard")));
    STAT("stat rel-hard", SANDBOX, 0, "rel-hard");
    CASE("link a symlink, following", w_path_link(SANDBOX, FOLLOW, P("rel"), SANDBOX, P("rel-hard-followed")));
    STAT("stat rel-hard-followed", SANDBOX, 0, "rel-hard-followed");
    CASE("link an escaping link, following", w_path_link(SANDBOX, FOLLOW, P("escape2"), SANDBOX, P("esc-hard")));
    CASE("link outside the grant", w_path_link(SANDBOX, 0, P("hello.txt"), SANDBOX, P("../hard-outside")));
    CASE("link from outside the grant", w_path_link(SANDBOX, 0, P("../outside.txt"), SANDBOX, P("in.txt")));
    CASE("link to the read-only grant", w_path_link(SANDBOX, 0, P("hello.txt"), RO, P("hard.txt")));
    CASE("link from the read-only grant", w_path_link(RO, 0, P("data.txt"), SANDBOX, P("data-hard.txt")));
    CASE("link hello.txt/ (trailing slash)", w_path_link(SANDBOX, 0, P("hello.txt/"), SANDBOX, P("h3")));
    CASE("link to new/ (trailing slash)", w_path_link(SANDBOX, 0, P("hello.txt"), SANDBOX, P("h4/")));
    CASE("link from fd 1", w_path_link(1, 0, P("hello.txt"), SANDBOX, P("h6")));

    section("removing links");
    CASE("unlink rel", w_path_unlink_file(SANDBOX, P("rel")));
    CASE("unlink to-sub", w_path_unlink_file(SANDBOX, P("to-sub")));
    CASE("unlink link-loop", w_path_unlink_file(SANDBOX, P("link-loop")));
    CASE("rmdir link-sub", w_path_remove_directory(SANDBOX, P("link-sub")));
    CASE("rename dangling2 -> dangling3", w_path_rename(SANDBOX, P("dangling2"), SANDBOX, P("dangling3")));
    CASE("rename hello.txt over link-escape", w_path_rename(SANDBOX, P("empty.txt"), SANDBOX, P("link-escape")));
    CASE("rename link-sub/inner.txt (through a link)", w_path_rename(SANDBOX, P("link-sub/inner.txt"), SANDBOX, P("moved.txt")));
    return 0;
}
