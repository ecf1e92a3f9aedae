/* A read-only grant: what can be read, and how every kind of change is refused. */
#include "corpus.h"

int main(void) {
    section("reading");
    int32_t fd = OPEN("open data.txt", RO, "data.txt", 0, R_READ, 0);
    show_fdstat("data.txt", (uint32_t)fd);
    read_case("read", (uint32_t)fd, 64);
    STAT("stat dir", RO, 0, "dir");
    int32_t dir = OPEN("open dir", RO, "dir", O_DIRECTORY_, R_READ, 0);
    show_fdstat("dir", (uint32_t)dir);
    int32_t nested = OPEN("open nested.txt below dir", (uint32_t)dir, "nested.txt", 0, R_READ, 0);
    read_case("read nested", (uint32_t)nested, 64);
    int32_t dot = OPEN("open .", RO, ".", 0, R_READ, 0);
    show_fdstat(".", (uint32_t)dot);

    section("writing is refused");
    OPEN("open data.txt for writing", RO, "data.txt", 0, R_RW, 0);
    OPEN("open data.txt write-only", RO, "data.txt", 0, R_FD_WRITE, 0);
    OPEN("open data.txt TRUNC", RO, "data.txt", O_TRUNC_, R_READ, 0);
    OPEN("open data.txt APPEND", RO, "data.txt", 0, R_READ, FL_APPEND);
    OPEN("create new.txt", RO, "new.txt", O_CREAT_, R_RW, 0);
    OPEN("create new.txt read-only", RO, "new.txt", O_CREAT_, R_READ, 0);
    OPEN("CREAT on an existing file", RO, "data.txt", O_CREAT_, R_READ, 0);
    OPEN("create below dir", (uint32_t)dir, "new.txt", O_CREAT_, R_RW, 0);
    OPEN("open nested.txt for writing below dir", (uint32_t)dir, "nested.txt", 0, R_RW, 0);
    write_case("write to a read-only descriptor", (uint32_t)fd, "x");
    CASE("set size", w_fd_filestat_set_size((uint32_t)fd, 0));
    CASE("mkdir", w_path_create_directory(RO, P("made")));
    CASE("mkdir existing", w_path_create_directory(RO, P("dir")));
    CASE("mkdir below dir", w_path_create_directory((uint32_t)dir, P("made")));
    CASE("rmdir dir", w_path_remove_directory(RO, P("dir")));
    CASE("rmdir missing", w_path_remove_directory(RO, P("missing")));
    CASE("unlink data.txt", w_path_unlink_file(RO, P("data.txt")));
    CASE("unlink missing", w_path_unlink_file(RO, P("missing")));
    CASE("unlink nested below dir", w_path_unlink_file((uint32_t)dir, P("nested.txt")));
    CASE("rename within", w_path_rename(RO, P("data.txt"), RO, P("moved.txt")));
    CASE("rename missing within", w_path_rename(RO, P("missing"), RO, P("moved.txt")));
    CASE("symlink", w_path_symlink(P("data.txt"), RO, P("l")));
    CASE("link", w_path_link(RO, 0, P("data.txt"), RO, P("h")));
    CASE("set times", w_path_filestat_set_times(RO, 0, P("data.txt"), 1, 1, ATIM | MTIM));
    CASE("set times through the descriptor", w_fd_filestat_set_times((uint32_t)fd, 1, 1, ATIM | MTIM));
    CASE("fd_sync", w_fd_sync((uint32_t)fd));
    CASE("fd_datasync", w_fd_datasync((uint32_t)fd));
    CASE("fd_advise", w_fd_advise((uint32_t)fd, 0, 0, 1));
    CASE("fd_fdstat_set_flags(APPEND)", w_fd_fdstat_set_flags((uint32_t)fd, FL_APPEND));
    show_fdstat("data.txt after set_flags", (uint32_t)fd);
    write_case("write after setting APPEND", (uint32_t)fd, "x");
    return 0;
}
