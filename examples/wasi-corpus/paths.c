/* Path resolution, on every kind of path function: trailing slashes, ".", "..", escapes,
 * absolute paths, empty paths, doubled slashes, NUL bytes, invalid UTF-8, long names. */
#include "corpus.h"

typedef struct { const char *label; const char *path; uint32_t len; } path_t;
#define PATH(label, s) {label, s, (uint32_t)(sizeof(s) - 1)}

static const path_t PATHS[] = {
    PATH("file", "hello.txt"),
    PATH("file/", "hello.txt/"),
    PATH("file/.", "hello.txt/."),
    PATH("file/..", "hello.txt/.."),
    PATH("dir", "sub"),
    PATH("dir/", "sub/"),
    PATH("dir//", "sub//"),
    PATH("dir/.", "sub/."),
    PATH("dir/..", "sub/.."),
    PATH("./file", "./hello.txt"),
    PATH("dir/../file", "sub/../hello.txt"),
    PATH("dir//inner", "sub//inner.txt"),
    PATH("dir/./inner", "sub/./inner.txt"),
    PATH("dir/inner/", "sub/inner.txt/"),
    PATH(".", "."),
    PATH("./", "./"),
    PATH("..", ".."),
    PATH("../", "../"),
    PATH("../outside", "../outside.txt"),
    PATH("dir/../../outside", "sub/../../outside.txt"),
    PATH("../sandbox/file", "../sandbox/hello.txt"),
    PATH("missing/../file", "missing/../hello.txt"),
    PATH("file/../file", "hello.txt/../hello.txt"),
    PATH("absolute /", "/"),
    PATH("absolute /sandbox/file", "/sandbox/hello.txt"),
    PATH("absolute /etc/hostname", "/etc/hostname"),
    PATH("empty", ""),
    PATH("missing", "missing.txt"),
    PATH("missing/", "missing.txt/"),
    PATH("NUL inside", "hello.txt\0junk"),
    PATH("NUL only", "\0"),
    PATH("invalid UTF-8", "hello\xff.txt"),
    PATH("valid UTF-8 missing", "h\xc3\xa9llo.txt"),
    PATH("link to file", "link-hello"),
    PATH("link to file/", "link-hello/"),
    PATH("link to dir", "link-sub"),
    PATH("link to dir/", "link-sub/"),
    PATH("link to dir/inner", "link-sub/inner.txt"),
    PATH("dangling link", "link-dangling"),
    PATH("dangling link/", "link-dangling/"),
    PATH("loop", "link-loop"),
    PATH("loop/", "link-loop/"),
    PATH("link escaping", "link-escape"),
    PATH("absolute link", "link-abs"),
    PATH("link up from dir", "sub/link-up"),
    PATH("link chain", "sub/link-chain"),
};
#define NPATHS (sizeof PATHS / sizeof PATHS[0])

static char long_name[300];

int main(void) {
    char label[128];
    section("path_open read-only, no follow");
    for (size_t i = 0; i < NPATHS; i++) {
        snprintf(label, sizeof label, "open %s", PATHS[i].label);
        int32_t fd = open_case(label, SANDBOX, 0, PATHS[i].path, PATHS[i].len, 0, R_READ, 0);
        if (fd >= 0) {
            show_fdstat("  ", (uint32_t)fd);
            w_fd_close((uint32_t)fd);
        }
    }
    section("path_open read-only, following links");
    for (size_t i = 0; i < NPATHS; i++) {
        snprintf(label, sizeof label, "open %s", PATHS[i].label);
        int32_t fd = open_case(label, SANDBOX, FOLLOW, PATHS[i].path, PATHS[i].len, 0, R_READ, 0);
        if (fd >= 0) {
            show_fdstat("  ", (uint32_t)fd);
            w_fd_close((uint32_t)fd);
        }
    }
    section("path_open DIRECTORY, following links");
    for (size_t i = 0; i < NPATHS; i++) {
        snprintf(label, sizeof label, "open dir %s", PATHS[i].label);
        int32_t fd = open_case(label, SANDBOX, FOLLOW, PATHS[i].path, PATHS[i].len, O_DIRECTORY_, R_READ, 0);
        if (fd >= 0) w_fd_close((uint32_t)fd);
    }
    section("path_filestat_get, no follow and follow");
    for (size_t i = 0; i < NPATHS; i++) {
        snprintf(label, sizeof label, "stat %s", PATHS[i].label);
        show_path_filestat(label, SANDBOX, 0, PATHS[i].path, PATHS[i].len);
        snprintf(label, sizeof label, "stat -L %s", PATHS[i].label);
        show_path_filestat(label, SANDBOX, FOLLOW, PATHS[i].path, PATHS[i].len);
    }
    section("path_readlink");
    for (size_t i = 0; i < NPATHS; i++) {
        uint8_t buf[64];
        uint32_t used = SENTINEL;
        int32_t e = w_path_readlink(SANDBOX, PATHS[i].path, PATHS[i].len, buf, sizeof buf, &used);
        if (e) printf("readlink %s = %s\n", PATHS[i].label, ename(e));
        else printf("readlink %s = OK \"%.*s\"\n", PATHS[i].label, (int)used, buf);
    }
    section("creating files (CREAT|EXCL) at each path");
    for (size_t i = 0; i < NPATHS; i++) {
        snprintf(label, sizeof label, "create %s", PATHS[i].label);
        int32_t fd = open_case(label, SANDBOX, 0, PATHS[i].path, PATHS[i].len, O_CREAT_ | O_EXCL_, R_RW, 0);
        if (fd >= 0) w_fd_close((uint32_t)fd);
    }
    section("creating files (CREAT) through links");
    open_case("create through dangling link", SANDBOX, FOLLOW, P("link-dangling"), O_CREAT_, R_RW, 0);
    open_case("create through dangling link, no follow", SANDBOX, 0, P("link-dangling"), O_CREAT_, R_RW, 0);
    open_case("create through link to dir", SANDBOX, FOLLOW, P("link-sub/created.txt"), O_CREAT_, R_RW, 0);
    open_case("create new/", SANDBOX, 0, P("new-with-slash/"), O_CREAT_, R_RW, 0);
    open_case("create new/ DIRECTORY", SANDBOX, 0, P("new-with-slash/"), O_CREAT_ | O_DIRECTORY_, R_RW, 0);
    section("mkdir, rmdir, unlink at each path");
    for (size_t i = 0; i < NPATHS; i++) {
        snprintf(label, sizeof label, "mkdir %s", PATHS[i].label);
        CASE(label, w_path_create_directory(SANDBOX, PATHS[i].path, PATHS[i].len));
    }
    for (size_t i = 0; i < NPATHS; i++) {
        snprintf(label, sizeof label, "rmdir %s", PATHS[i].label);
        CASE(label, w_path_remove_directory(SANDBOX, PATHS[i].path, PATHS[i].len));
    }
    for (size_t i = NPATHS; i-- > 0;) {
        snprintf(label, sizeof label, "unlink %s", PATHS[i].label);
        CASE(label, w_path_unlink_file(SANDBOX, PATHS[i].path, PATHS[i].len));
    }
    section("long names");
    memset(long_name, 'n', 255);
    int32_t fd = open_case("create a 255-byte name", SANDBOX, 0, long_name, 255, O_CREAT_, R_RW, 0);
    if (fd >= 0) w_fd_close((uint32_t)fd);
    memset(long_name, 'm', 256);
    open_case("create a 256-byte name", SANDBOX, 0, long_name, 256, O_CREAT_, R_RW, 0);
    CASE("mkdir a 256-byte name", w_path_create_directory(SANDBOX, long_name, 256));
    memset(long_name, 'n', 255);
    CASE("unlink the 255-byte name", w_path_unlink_file(SANDBOX, long_name, 255));
    return 0;
}
