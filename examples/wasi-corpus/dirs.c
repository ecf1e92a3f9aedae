/* Directories: path_create_directory, path_remove_directory, path_unlink_file, path_rename,
 * path_filestat_get, fd_readdir (listing, cookies, small buffers), opening directories. */
#include "corpus.h"

#define MAX_NAMES 32

/* List a directory with one big fd_readdir; print names sorted (the host's order is not ours to fix). */
static void list(const char *label, uint32_t fd) {
    static uint8_t buf[8192];
    uint32_t used = SENTINEL;
    int32_t e = w_fd_readdir(fd, buf, sizeof buf, 0, &used);
    if (e) {
        printf("%s = %s\n", label, ename(e));
        return;
    }
    char names[MAX_NAMES][64];
    int types[MAX_NAMES];
    uint64_t nexts[MAX_NAMES];
    int count = 0;
    uint32_t pos = 0;
    while (pos + sizeof(dirent_t) <= used && count < MAX_NAMES) {
        dirent_t d;
        memcpy(&d, buf + pos, sizeof d);
        pos += sizeof d;
        uint32_t len = d.d_namlen < 63 ? d.d_namlen : 63;
        memcpy(names[count], buf + pos, len);
        names[count][len] = 0;
        types[count] = d.d_type;
        nexts[count] = d.d_next;
        pos += d.d_namlen;
        count++;
    }
    int cookies_in_order = 1;
    for (int i = 0; i < count; i++) cookies_in_order &= nexts[i] == (uint64_t)i + 1;
    for (int i = 0; i < count; i++)
        for (int j = i + 1; j < count; j++)
            if (strcmp(names[j], names[i]) < 0) {
                char tmp[64];
                strcpy(tmp, names[i]);
                strcpy(names[i], names[j]);
                strcpy(names[j], tmp);
                int t = types[i];
                types[i] = types[j];
                types[j] = t;
            }
    printf("%s = OK %d entries, cookies 1..%d: %s:", label, count, count, cookies_in_order ? "yes" : "no");
    for (int i = 0; i < count; i++) printf(" %s(%s)", names[i], filetype_name((uint8_t)types[i]));
    printf("\n");
}

/* fd_readdir with a tiny buffer and a cookie: how many bytes come back. */
static void readdir_bytes(const char *label, uint32_t fd, uint32_t size, uint64_t cookie) {
    uint8_t buf[256];
    memset(buf, 0xee, sizeof buf);
    uint32_t used = SENTINEL;
    int32_t e = w_fd_readdir(fd, buf, size, cookie, &used);
    if (e) {
        printf("%s = %s\n", label, ename(e));
        return;
    }
    printf("%s = OK used=%u", label, used);
    if (used >= sizeof(dirent_t)) {
        dirent_t d;
        memcpy(&d, buf, sizeof d);
        printf(" first: next=%llu namlen=%u type=%s", (unsigned long long)d.d_next, d.d_namlen,
               filetype_name(d.d_type));
    }
    printf(" byte after=%s\n", buf[size < sizeof buf ? size : sizeof buf - 1] == 0xee ? "untouched" : "written");
}

int main(void) {
    section("create and remove");
    CASE("mkdir a", w_path_create_directory(SANDBOX, P("a")));
    CASE("mkdir a again", w_path_create_directory(SANDBOX, P("a")));
    CASE("mkdir a/b", w_path_create_directory(SANDBOX, P("a/b")));
    CASE("mkdir x/y (missing parent)", w_path_create_directory(SANDBOX, P("x/y")));
    CASE("mkdir hello.txt (a file)", w_path_create_directory(SANDBOX, P("hello.txt")));
    CASE("mkdir hello.txt/z", w_path_create_directory(SANDBOX, P("hello.txt/z")));
    CASE("mkdir empty path", w_path_create_directory(SANDBOX, P("")));
    CASE("mkdir .", w_path_create_directory(SANDBOX, P(".")));
    CASE("mkdir c/ (trailing slash)", w_path_create_directory(SANDBOX, P("c/")));
    CASE("mkdir d//", w_path_create_directory(SANDBOX, P("d//")));
    STAT("stat a", SANDBOX, 0, "a");
    STAT("stat c", SANDBOX, 0, "c");
    CASE("rmdir a (not empty)", w_path_remove_directory(SANDBOX, P("a")));
    CASE("rmdir a/b", w_path_remove_directory(SANDBOX, P("a/b")));
    CASE("rmdir a/b again", w_path_remove_directory(SANDBOX, P("a/b")));
    CASE("rmdir hello.txt (a file)", w_path_remove_directory(SANDBOX, P("hello.txt")));
    CASE("rmdir .", w_path_remove_directory(SANDBOX, P(".")));
    CASE("rmdir a/.", w_path_remove_directory(SANDBOX, P("a/.")));
    CASE("rmdir a/..", w_path_remove_directory(SANDBOX, P("a/..")));
    CASE("rmdir empty path", w_path_remove_directory(SANDBOX, P("")));
    CASE("rmdir c/", w_path_remove_directory(SANDBOX, P("c/")));
    CASE("rmdir link-sub (a link to a directory)", w_path_remove_directory(SANDBOX, P("link-sub")));
    CASE("unlink a (a directory)", w_path_unlink_file(SANDBOX, P("a")));
    CASE("unlink a/ (a directory)", w_path_unlink_file(SANDBOX, P("a/")));
    CASE("unlink missing.txt", w_path_unlink_file(SANDBOX, P("missing.txt")));
    CASE("unlink empty path", w_path_unlink_file(SANDBOX, P("")));
    CASE("unlink .", w_path_unlink_file(SANDBOX, P(".")));
    CASE("unlink sub/inner.txt", w_path_unlink_file(SANDBOX, P("sub/inner.txt")));
    CASE("unlink link-sub", w_path_unlink_file(SANDBOX, P("link-sub")));
    CASE("unlink link-dangling", w_path_unlink_file(SANDBOX, P("link-dangling")));

    section("stat");
    STAT("stat hello.txt", SANDBOX, 0, "hello.txt");
    STAT("stat empty.txt", SANDBOX, 0, "empty.txt");
    STAT("stat sub", SANDBOX, 0, "sub");
    STAT("stat .", SANDBOX, 0, ".");
    STAT("stat empty path", SANDBOX, 0, "");
    STAT("stat missing", SANDBOX, 0, "missing");
    STAT("stat link-hello", SANDBOX, 0, "link-hello");
    STAT("stat link-hello, following", SANDBOX, FOLLOW, "link-hello");
    STAT("stat link-loop, following", SANDBOX, FOLLOW, "link-loop");
    STAT("stat link-loop", SANDBOX, 0, "link-loop");
    STAT("stat hello.txt/", SANDBOX, 0, "hello.txt/");
    STAT("stat sub/", SANDBOX, 0, "sub/");
    STAT("stat ro data.txt", RO, 0, "data.txt");
    filestat_t st1, st2;
    w_path_filestat_get(SANDBOX, 0, P("hello.txt"), &st1);
    w_path_filestat_get(SANDBOX, FOLLOW, P("link-hello"), &st2);
    printf("a link followed is the same file: %s\n", st1.ino == st2.ino ? "yes" : "no");
    w_path_filestat_get(SANDBOX, 0, P("empty.txt"), &st2);
    printf("two files differ: %s\n", st1.ino != st2.ino ? "yes" : "no");

    section("rename");
    CASE("rename hello.txt -> greeting.txt", w_path_rename(SANDBOX, P("hello.txt"), SANDBOX, P("greeting.txt")));
    CASE("rename hello.txt again", w_path_rename(SANDBOX, P("hello.txt"), SANDBOX, P("x.txt")));
    CASE("rename greeting.txt -> empty.txt (replaces)", w_path_rename(SANDBOX, P("greeting.txt"), SANDBOX, P("empty.txt")));
    CASE("rename empty.txt -> sub (a directory)", w_path_rename(SANDBOX, P("empty.txt"), SANDBOX, P("sub")));
    CASE("rename sub -> empty.txt (a file)", w_path_rename(SANDBOX, P("sub"), SANDBOX, P("empty.txt")));
    CASE("mkdir e", w_path_create_directory(SANDBOX, P("e")));
    CASE("rename a -> e (empty directory)", w_path_rename(SANDBOX, P("a"), SANDBOX, P("e")));
    CASE("rename e -> sub (not empty)", w_path_rename(SANDBOX, P("e"), SANDBOX, P("sub")));
    CASE("rename sub -> sub/deeper/x (into itself)", w_path_rename(SANDBOX, P("sub"), SANDBOX, P("sub/deeper/x")));
    CASE("rename empty.txt -> empty.txt/", w_path_rename(SANDBOX, P("empty.txt"), SANDBOX, P("empty.txt/")));
    CASE("rename empty.txt/ -> f.txt", w_path_rename(SANDBOX, P("empty.txt/"), SANDBOX, P("f.txt")));
    CASE("rename e/ -> g/", w_path_rename(SANDBOX, P("e/"), SANDBOX, P("g/")));
    CASE("rename g -> h/", w_path_rename(SANDBOX, P("g"), SANDBOX, P("h/")));
    CASE("rename . -> i", w_path_rename(SANDBOX, P("."), SANDBOX, P("i")));
    CASE("rename h -> .", w_path_rename(SANDBOX, P("h"), SANDBOX, P(".")));
    CASE("rename missing -> j", w_path_rename(SANDBOX, P("missing"), SANDBOX, P("j")));
    CASE("rename empty.txt -> missing/k", w_path_rename(SANDBOX, P("empty.txt"), SANDBOX, P("missing/k")));
    CASE("rename link-hello -> link-renamed", w_path_rename(SANDBOX, P("link-hello"), SANDBOX, P("link-renamed")));
    CASE("rename to the read-only grant", w_path_rename(SANDBOX, P("empty.txt"), RO, P("moved.txt")));
    CASE("rename from the read-only grant", w_path_rename(RO, P("data.txt"), SANDBOX, P("data.txt")));

    section("readdir");
    list("readdir sandbox", SANDBOX);
    list("readdir ro", RO);
    int32_t sub = OPEN("open sub", SANDBOX, "sub", O_DIRECTORY_, R_READ, 0);
    list("readdir sub", (uint32_t)sub);
    int32_t deeper = OPEN("open sub/deeper", SANDBOX, "sub/deeper", O_DIRECTORY_, R_READ, 0);
    list("readdir sub/deeper (empty)", (uint32_t)deeper);
    readdir_bytes("readdir(deeper, 0 bytes)", (uint32_t)deeper, 0, 0);
    readdir_bytes("readdir(deeper, 10 bytes)", (uint32_t)deeper, 10, 0);
    readdir_bytes("readdir(deeper, 24 bytes)", (uint32_t)deeper, 24, 0);
    readdir_bytes("readdir(deeper, 25 bytes)", (uint32_t)deeper, 25, 0);
    readdir_bytes("readdir(deeper, 26 bytes)", (uint32_t)deeper, 26, 0);
    readdir_bytes("readdir(deeper, 200 bytes)", (uint32_t)deeper, 200, 0);
    readdir_bytes("readdir(deeper, cookie 1)", (uint32_t)deeper, 200, 1);
    readdir_bytes("readdir(deeper, cookie 2)", (uint32_t)deeper, 200, 2);
    readdir_bytes("readdir(deeper, cookie 3)", (uint32_t)deeper, 200, 3);
    readdir_bytes("readdir(deeper, cookie 2^63)", (uint32_t)deeper, 200, 1ull << 63);
    CASE("mkdir sub/deeper/only", w_path_create_directory(SANDBOX, P("sub/deeper/only")));
    readdir_bytes("readdir(deeper, cookie 2, one entry)", (uint32_t)deeper, 200, 2);
    readdir_bytes("readdir(deeper, cookie 2, 30 bytes)", (uint32_t)deeper, 30, 2);
    int32_t file = OPEN("open sub/inner.txt", SANDBOX, "sub/inner.txt", 0, R_READ, 0);
    readdir_bytes("readdir(a file)", (uint32_t)(file < 0 ? 99 : file), 200, 0);
    readdir_bytes("readdir(99)", 99, 200, 0);
    CASE("rmdir sub/deeper/only", w_path_remove_directory(SANDBOX, P("sub/deeper/only")));
    list("readdir deeper after rmdir", (uint32_t)deeper);

    section("directories opened below the preopen");
    show_fdstat("sub", (uint32_t)sub);
    show_fdstat("preopen", SANDBOX);
    show_fdstat("ro preopen", RO);
    show_filestat("fd_filestat_get(sub)", (uint32_t)sub);
    CASE("mkdir through sub", w_path_create_directory((uint32_t)sub, P("made-through-sub")));
    CASE("mkdir ../escape through sub", w_path_create_directory((uint32_t)sub, P("../escape")));
    CASE("mkdir ../../escape through sub", w_path_create_directory((uint32_t)sub, P("../../escape")));
    CASE("rmdir through sub", w_path_remove_directory((uint32_t)sub, P("made-through-sub")));
    int32_t dot = OPEN("open . read", SANDBOX, ".", 0, R_FD_READ | R_FD_READDIR, 0);
    show_fdstat(".", (uint32_t)dot);
    int32_t dotw = OPEN("open . all rights", SANDBOX, ".", 0, R_ALL, 0);
    if (dotw >= 0) show_fdstat(". all rights", (uint32_t)dotw);
    int32_t dotn = OPEN("open . no rights", SANDBOX, ".", 0, 0, 0);
    if (dotn >= 0) {
        show_fdstat(". no rights", (uint32_t)dotn);
        list("readdir . opened without rights", (uint32_t)dotn);
    }
    OPEN("open . DIRECTORY write", SANDBOX, ".", O_DIRECTORY_, R_FD_WRITE, 0);
    OPEN("open sub DIRECTORY|CREAT", SANDBOX, "sub", O_DIRECTORY_ | O_CREAT_, R_READ, 0);
    OPEN("open newdir DIRECTORY|CREAT", SANDBOX, "newdir", O_DIRECTORY_ | O_CREAT_, R_READ, 0);
    OPEN("open sub TRUNC", SANDBOX, "sub", O_TRUNC_, R_RW, 0);
    OPEN("open sub DIRECTORY|TRUNC", SANDBOX, "sub", O_DIRECTORY_ | O_TRUNC_, R_READ, 0);
    OPEN("open sub CREAT|EXCL", SANDBOX, "sub", O_CREAT_ | O_EXCL_, R_READ, 0);
    OPEN("open sub APPEND", SANDBOX, "sub", 0, R_READ, FL_APPEND);
    OPEN("open sub/inner.txt DIRECTORY", SANDBOX, "sub/inner.txt", O_DIRECTORY_, R_READ, 0);
    int32_t dd = OPEN("open sub NONBLOCK", SANDBOX, "sub", 0, R_READ, FL_NONBLOCK);
    if (dd >= 0) show_fdstat("sub NONBLOCK", (uint32_t)dd);
    return 0;
}
