/* Shared helpers of essa's WASI differential corpus.
 *
 * Every program calls the wasi_snapshot_preview1 functions directly (the raw
 * imports below, not wasi-libc's wrappers, so that paths carry explicit
 * lengths and any flag value can be passed) and prints one line per case:
 * what it called and what came back, errno by name. The differential tests
 * (tests/wasi) run each program under plain wasmtime and under essa on every
 * engine and compare the lines, the exit status and the directory tree left
 * behind. Nothing printed may depend on the host: no inode numbers, no times
 * other than ones the program set, no directory order.
 *
 * The tests preopen the fixture "/sandbox" (read-write) as fd 3 and "/ro"
 * (read-only) as fd 4; see tests/wasi/fixture.py for their contents.
 */
#ifndef ESSA_WASI_CORPUS_H
#define ESSA_WASI_CORPUS_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SANDBOX 3
#define RO 4

#define W(name) __attribute__((import_module("wasi_snapshot_preview1"), import_name(#name)))

typedef struct { uint8_t *buf; uint32_t len; } iovec_t;
typedef struct { const uint8_t *buf; uint32_t len; } ciovec_t;

W(args_get) int32_t w_args_get(uint8_t **argv, uint8_t *buf);
W(args_sizes_get) int32_t w_args_sizes_get(uint32_t *argc, uint32_t *size);
W(environ_get) int32_t w_environ_get(uint8_t **environ, uint8_t *buf);
W(environ_sizes_get) int32_t w_environ_sizes_get(uint32_t *count, uint32_t *size);
W(clock_res_get) int32_t w_clock_res_get(uint32_t id, uint64_t *res);
W(clock_time_get) int32_t w_clock_time_get(uint32_t id, uint64_t precision, uint64_t *time);
W(fd_advise) int32_t w_fd_advise(uint32_t fd, uint64_t offset, uint64_t len, uint32_t advice);
W(fd_allocate) int32_t w_fd_allocate(uint32_t fd, uint64_t offset, uint64_t len);
W(fd_close) int32_t w_fd_close(uint32_t fd);
W(fd_datasync) int32_t w_fd_datasync(uint32_t fd);
W(fd_fdstat_get) int32_t w_fd_fdstat_get(uint32_t fd, void *stat);
W(fd_fdstat_set_flags) int32_t w_fd_fdstat_set_flags(uint32_t fd, uint32_t flags);
W(fd_fdstat_set_rights) int32_t w_fd_fdstat_set_rights(uint32_t fd, uint64_t base, uint64_t inheriting);
W(fd_filestat_get) int32_t w_fd_filestat_get(uint32_t fd, void *stat);
W(fd_filestat_set_size) int32_t w_fd_filestat_set_size(uint32_t fd, uint64_t size);
W(fd_filestat_set_times) int32_t w_fd_filestat_set_times(uint32_t fd, uint64_t atim, uint64_t mtim, uint32_t flags);
W(fd_pread) int32_t w_fd_pread(uint32_t fd, const iovec_t *iovs, uint32_t n, uint64_t offset, uint32_t *nread);
W(fd_prestat_get) int32_t w_fd_prestat_get(uint32_t fd, void *prestat);
W(fd_prestat_dir_name) int32_t w_fd_prestat_dir_name(uint32_t fd, uint8_t *path, uint32_t len);
W(fd_pwrite) int32_t w_fd_pwrite(uint32_t fd, const ciovec_t *iovs, uint32_t n, uint64_t offset, uint32_t *nwritten);
W(fd_read) int32_t w_fd_read(uint32_t fd, const iovec_t *iovs, uint32_t n, uint32_t *nread);
W(fd_readdir) int32_t w_fd_readdir(uint32_t fd, uint8_t *buf, uint32_t len, uint64_t cookie, uint32_t *used);
W(fd_renumber) int32_t w_fd_renumber(uint32_t fd, uint32_t to);
W(fd_seek) int32_t w_fd_seek(uint32_t fd, int64_t offset, uint32_t whence, uint64_t *newoffset);
W(fd_sync) int32_t w_fd_sync(uint32_t fd);
W(fd_tell) int32_t w_fd_tell(uint32_t fd, uint64_t *offset);
W(fd_write) int32_t w_fd_write(uint32_t fd, const ciovec_t *iovs, uint32_t n, uint32_t *nwritten);
W(path_create_directory) int32_t w_path_create_directory(uint32_t fd, const char *path, uint32_t len);
W(path_filestat_get) int32_t w_path_filestat_get(uint32_t fd, uint32_t flags, const char *path, uint32_t len, void *stat);
W(path_filestat_set_times) int32_t w_path_filestat_set_times(uint32_t fd, uint32_t flags, const char *path,
                                                             uint32_t len, uint64_t atim, uint64_t mtim, uint32_t fst);
W(path_link) int32_t w_path_link(uint32_t fd, uint32_t flags, const char *old, uint32_t old_len, uint32_t new_fd,
                                 const char *new_, uint32_t new_len);
W(path_open) int32_t w_path_open(uint32_t fd, uint32_t dirflags, const char *path, uint32_t len, uint32_t oflags,
                                 uint64_t base, uint64_t inheriting, uint32_t fdflags, uint32_t *opened);
W(path_readlink) int32_t w_path_readlink(uint32_t fd, const char *path, uint32_t len, uint8_t *buf, uint32_t buf_len,
                                         uint32_t *used);
W(path_remove_directory) int32_t w_path_remove_directory(uint32_t fd, const char *path, uint32_t len);
W(path_rename) int32_t w_path_rename(uint32_t fd, const char *old, uint32_t old_len, uint32_t new_fd,
                                     const char *new_, uint32_t new_len);
W(path_symlink) int32_t w_path_symlink(const char *old, uint32_t old_len, uint32_t fd, const char *new_,
                                       uint32_t new_len);
W(path_unlink_file) int32_t w_path_unlink_file(uint32_t fd, const char *path, uint32_t len);
W(poll_oneoff) int32_t w_poll_oneoff(const void *in, void *out, uint32_t n, uint32_t *nevents);
W(proc_exit) _Noreturn void w_proc_exit(uint32_t status);
W(proc_raise) int32_t w_proc_raise(uint32_t signal);
W(sched_yield) int32_t w_sched_yield(void);
W(random_get) int32_t w_random_get(uint8_t *buf, uint32_t len);
W(sock_accept) int32_t w_sock_accept(uint32_t fd, uint32_t flags, uint32_t *accepted);
W(sock_recv) int32_t w_sock_recv(uint32_t fd, const iovec_t *iovs, uint32_t n, uint32_t flags, uint32_t *nread,
                                 uint16_t *oflags);
W(sock_send) int32_t w_sock_send(uint32_t fd, const ciovec_t *iovs, uint32_t n, uint32_t flags, uint32_t *nwritten);
W(sock_shutdown) int32_t w_sock_shutdown(uint32_t fd, uint32_t how);

/* Layouts of wasi_snapshot_preview1. */
typedef struct {
    uint8_t filetype;
    uint16_t flags;
    uint64_t rights_base;
    uint64_t rights_inheriting;
} fdstat_t;

typedef struct {
    uint64_t dev, ino;
    uint8_t filetype;
    uint64_t nlink, size, atim, mtim, ctim;
} filestat_t;

typedef struct {
    uint64_t d_next, d_ino;
    uint32_t d_namlen;
    uint8_t d_type;
} dirent_t;

typedef struct {
    uint64_t userdata;
    uint8_t tag;
    union {
        struct { uint32_t id; uint64_t timeout, precision; uint16_t flags; } clock;
        struct { uint32_t fd; } fd_readwrite;
    } u;
} subscription_t;

typedef struct {
    uint64_t userdata;
    uint16_t error;
    uint8_t type;
    uint64_t nbytes;
    uint16_t flags;
} event_t;

_Static_assert(sizeof(fdstat_t) == 24, "fdstat");
_Static_assert(sizeof(filestat_t) == 64, "filestat");
_Static_assert(sizeof(dirent_t) == 24, "dirent");
_Static_assert(sizeof(subscription_t) == 48, "subscription");
_Static_assert(sizeof(event_t) == 32, "event");

/* Flags and rights. */
#define O_CREAT_ 1
#define O_DIRECTORY_ 2
#define O_EXCL_ 4
#define O_TRUNC_ 8
#define FL_APPEND 1
#define FL_DSYNC 2
#define FL_NONBLOCK 4
#define FL_RSYNC 8
#define FL_SYNC 16
#define FOLLOW 1
#define ATIM 1
#define ATIM_NOW 2
#define MTIM 4
#define MTIM_NOW 8

#define R_FD_DATASYNC (1ull << 0)
#define R_FD_READ (1ull << 1)
#define R_FD_SEEK (1ull << 2)
#define R_FD_FDSTAT_SET_FLAGS (1ull << 3)
#define R_FD_SYNC (1ull << 4)
#define R_FD_TELL (1ull << 5)
#define R_FD_WRITE (1ull << 6)
#define R_FD_ADVISE (1ull << 7)
#define R_FD_ALLOCATE (1ull << 8)
#define R_FD_READDIR (1ull << 14)
#define R_FD_FILESTAT_GET (1ull << 21)
#define R_FD_FILESTAT_SET_SIZE (1ull << 22)
#define R_ALL ((1ull << 30) - 1)
#define R_READ (R_FD_READ | R_FD_SEEK | R_FD_TELL | R_FD_FILESTAT_GET | R_FD_READDIR)
#define R_RW (R_READ | R_FD_WRITE | R_FD_FILESTAT_SET_SIZE | R_FD_ALLOCATE)

/* A string literal as (pointer, length), so paths never need a NUL. */
#define P(s) (s), (uint32_t)(sizeof(s) - 1)

static const char *const ERRNO_NAMES[] = {
    "OK", "E2BIG", "EACCES", "EADDRINUSE", "EADDRNOTAVAIL", "EAFNOSUPPORT", "EAGAIN", "EALREADY", "EBADF",
    "EBADMSG", "EBUSY", "ECANCELED", "ECHILD", "ECONNABORTED", "ECONNREFUSED", "ECONNRESET", "EDEADLK",
    "EDESTADDRREQ", "EDOM", "EDQUOT", "EEXIST", "EFAULT", "EFBIG", "EHOSTUNREACH", "EIDRM", "EILSEQ",
    "EINPROGRESS", "EINTR", "EINVAL", "EIO", "EISCONN", "EISDIR", "ELOOP", "EMFILE", "EMLINK", "EMSGSIZE",
    "EMULTIHOP", "ENAMETOOLONG", "ENETDOWN", "ENETRESET", "ENETUNREACH", "ENFILE", "ENOBUFS", "ENODEV", "ENOENT",
    "ENOEXEC", "ENOLCK", "ENOLINK", "ENOMEM", "ENOMSG", "ENOPROTOOPT", "ENOSPC", "ENOSYS", "ENOTCONN", "ENOTDIR",
    "ENOTEMPTY", "ENOTRECOVERABLE", "ENOTSOCK", "ENOTSUP", "ENOTTY", "ENXIO", "EOVERFLOW", "EOWNERDEAD", "EPERM",
    "EPIPE", "EPROTO", "EPROTONOSUPPORT", "EPROTOTYPE", "ERANGE", "EROFS", "ESPIPE", "ESRCH", "ESTALE",
    "ETIMEDOUT", "ETXTBSY", "EXDEV", "ENOTCAPABLE",
};

static inline const char *ename(int32_t e) {
    static char other[24];
    if (e >= 0 && e < (int32_t)(sizeof(ERRNO_NAMES) / sizeof(ERRNO_NAMES[0]))) return ERRNO_NAMES[e];
    snprintf(other, sizeof other, "errno %d", (int)e);
    return other;
}

/* Print "label = ERRNO" and return the errno. */
#define CASE(label, call) case_result(label, (call))
static inline int32_t case_result(const char *label, int32_t e) {
    printf("%s = %s\n", label, ename(e));
    return e;
}

/* The fd a value-result slot holds, or "untouched" when a failed call left the sentinel. */
#define SENTINEL 0xdeadbeefu
static inline void show_fd(const char *label, int32_t e, uint32_t fd) {
    if (fd == SENTINEL) printf("%s = %s (fd untouched)\n", label, ename(e));
    else printf("%s = %s fd=%u\n", label, ename(e), fd);
}

/* path_open in `dir`, printing the outcome; returns the new fd or -1. */
static inline int32_t open_case(const char *label, uint32_t dir, uint32_t dirflags, const char *path, uint32_t len,
                         uint32_t oflags, uint64_t rights, uint32_t fdflags) {
    uint32_t fd = SENTINEL;
    int32_t e = w_path_open(dir, dirflags, path, len, oflags, rights, rights, fdflags, &fd);
    show_fd(label, e, fd);
    return e == 0 ? (int32_t)fd : -1;
}
#define OPEN(label, dir, path, oflags, rights, fdflags) \
    open_case(label, dir, 0, P(path), oflags, rights, fdflags)

static inline const char *filetype_name(uint8_t t) {
    static const char *const names[] = {"unknown", "block", "char", "dir", "file", "dgram", "stream", "symlink"};
    return t < 8 ? names[t] : "?";
}

static inline void show_fdstat(const char *label, uint32_t fd) {
    fdstat_t st;
    memset(&st, 0xab, sizeof st);
    int32_t e = w_fd_fdstat_get(fd, &st);
    if (e) {
        printf("%s fdstat = %s\n", label, ename(e));
        return;
    }
    printf("%s fdstat = %s flags=%#x base=%#llx inheriting=%#llx\n", label, filetype_name(st.filetype), st.flags,
           (unsigned long long)st.rights_base, (unsigned long long)st.rights_inheriting);
}

static inline void print_filestat(const char *label, int32_t e, const filestat_t *st) {
    if (e) {
        printf("%s = %s\n", label, ename(e));
        return;
    }
    printf("%s = %s nlink=%llu size=%llu dev=%llu\n", label, filetype_name(st->filetype),
           (unsigned long long)st->nlink, st->filetype == 3 ? 0ull : (unsigned long long)st->size,
           (unsigned long long)st->dev);
}

static inline void show_filestat(const char *label, uint32_t fd) {
    filestat_t st;
    print_filestat(label, w_fd_filestat_get(fd, &st), &st);
}

static inline void show_path_filestat(const char *label, uint32_t dir, uint32_t flags, const char *path, uint32_t len) {
    filestat_t st;
    print_filestat(label, w_path_filestat_get(dir, flags, path, len, &st), &st);
}
#define STAT(label, dir, flags, path) show_path_filestat(label, dir, flags, P(path))

/* Write a string to fd; print the outcome. */
static inline void write_case(const char *label, uint32_t fd, const char *text) {
    ciovec_t iov = {(const uint8_t *)text, (uint32_t)strlen(text)};
    uint32_t n = SENTINEL;
    int32_t e = w_fd_write(fd, &iov, 1, &n);
    if (e) printf("%s = %s%s\n", label, ename(e), n == SENTINEL ? "" : " (nwritten touched)");
    else printf("%s = OK n=%u\n", label, n);
}

/* Read up to 200 bytes from fd; print the outcome and the bytes. */
static inline void read_case(const char *label, uint32_t fd, uint32_t max) {
    uint8_t buf[256];
    iovec_t iov = {buf, max < sizeof buf ? max : (uint32_t)sizeof buf};
    uint32_t n = SENTINEL;
    int32_t e = w_fd_read(fd, &iov, 1, &n);
    if (e) {
        printf("%s = %s%s\n", label, ename(e), n == SENTINEL ? "" : " (nread touched)");
        return;
    }
    printf("%s = OK n=%u \"", label, n);
    for (uint32_t i = 0; i < n; i++) {
        uint8_t c = buf[i];
        if (c >= 32 && c < 127 && c != '"' && c != '\\') putchar(c);
        else printf("\\x%02x", c);
    }
    printf("\"\n");
}

static inline void seek_case(const char *label, uint32_t fd, int64_t offset, uint32_t whence) {
    uint64_t pos = 0xdeadbeefdeadbeefull;
    int32_t e = w_fd_seek(fd, offset, whence, &pos);
    if (e) printf("%s = %s%s\n", label, ename(e), pos == 0xdeadbeefdeadbeefull ? "" : " (offset touched)");
    else printf("%s = OK pos=%llu\n", label, (unsigned long long)pos);
}

static inline void tell_case(const char *label, uint32_t fd) {
    uint64_t pos = 0xdeadbeefdeadbeefull;
    int32_t e = w_fd_tell(fd, &pos);
    if (e) printf("%s = %s\n", label, ename(e));
    else printf("%s = OK pos=%llu\n", label, (unsigned long long)pos);
}

static inline void section(const char *name) {
    printf("-- %s\n", name);
}

/* Flush stdout, then exit with `status` through proc_exit. */
static inline _Noreturn void finish(uint32_t status) {
    fflush(stdout);
    fflush(stderr);
    w_proc_exit(status);
}

#endif
