/* Calls wasmtime answers with a trap rather than an errno: pointers outside memory or
 * misaligned, invalid enum and flag arguments. argv[1] names the case; the program
 * prints it, then makes the call, and prints the result if it survives. */
#include "corpus.h"

#define END_OF_MEMORY ((void *)(uintptr_t)0xfffffff0u)

typedef struct { const char *name; int32_t (*run)(void); } trap_case;

static uint8_t scratch[256] __attribute__((aligned(16)));

static int32_t fdstat_misaligned(void) { return w_fd_fdstat_get(1, scratch + 1); }
static int32_t fdstat_outside(void) { return w_fd_fdstat_get(1, END_OF_MEMORY); }
static int32_t write_iovs_outside(void) { uint32_t n; return w_fd_write(1, END_OF_MEMORY, 1, &n); }
static int32_t write_buffer_outside(void) {
    ciovec_t iov = {END_OF_MEMORY, 64};
    uint32_t n;
    return w_fd_write(1, &iov, 1, &n);
}
static int32_t write_nwritten_outside(void) {
    ciovec_t iov = {(const uint8_t *)"x\n", 2};
    return w_fd_write(1, &iov, 1, END_OF_MEMORY);
}
static int32_t read_buffer_outside(void) {
    iovec_t iov = {END_OF_MEMORY, 64};
    uint32_t n;
    int32_t fd = -1;
    uint32_t opened;
    if (w_path_open(SANDBOX, 0, P("hello.txt"), 0, R_READ, R_READ, 0, &opened) == 0) fd = (int32_t)opened;
    return w_fd_read((uint32_t)fd, &iov, 1, &n);
}
static int32_t path_outside(void) { return w_path_create_directory(SANDBOX, END_OF_MEMORY, 64); }
static int32_t opened_fd_outside(void) {
    return w_path_open(SANDBOX, 0, P("hello.txt"), 0, R_READ, R_READ, 0, END_OF_MEMORY);
}
static int32_t args_outside(void) { return w_args_sizes_get(END_OF_MEMORY, END_OF_MEMORY); }
static int32_t random_outside(void) { return w_random_get(END_OF_MEMORY, 64); }
static int32_t clock_outside(void) { return w_clock_time_get(1, 0, END_OF_MEMORY); }
static int32_t clock_misaligned(void) { return w_clock_time_get(1, 0, (uint64_t *)(scratch + 4)); }
static int32_t poll_misaligned(void) {
    uint32_t n;
    memset(scratch, 0, sizeof scratch);
    return w_poll_oneoff(scratch + 4, scratch + 128, 1, &n);
}
static int32_t poll_outside(void) {
    uint32_t n;
    return w_poll_oneoff(END_OF_MEMORY, scratch, 1, &n);
}
static int32_t seek_bad_whence(void) { uint64_t p; return w_fd_seek(1, 0, 3, &p); }
static int32_t advise_bad_advice(void) { return w_fd_advise(SANDBOX, 0, 0, 6); }
static int32_t clock_bad_id(void) { uint64_t t; return w_clock_time_get(4, 0, &t); }
static int32_t res_bad_id(void) { uint64_t t; return w_clock_res_get(9, &t); }
static int32_t set_flags_bad(void) { return w_fd_fdstat_set_flags(1, 32); }
static int32_t open_bad_oflags(void) {
    uint32_t fd;
    return w_path_open(SANDBOX, 0, P("hello.txt"), 16, R_READ, R_READ, 0, &fd);
}
static int32_t open_bad_lookupflags(void) {
    uint32_t fd;
    return w_path_open(SANDBOX, 2, P("hello.txt"), 0, R_READ, R_READ, 0, &fd);
}
static int32_t open_bad_rights(void) {
    uint32_t fd;
    return w_path_open(SANDBOX, 0, P("hello.txt"), 0, 1ull << 30, 0, 0, &fd);
}
static int32_t open_bad_fdflags(void) {
    uint32_t fd;
    return w_path_open(SANDBOX, 0, P("hello.txt"), 0, R_READ, R_READ, 32, &fd);
}
static int32_t set_times_bad_flags(void) { return w_fd_filestat_set_times(SANDBOX, 0, 0, 16); }
static int32_t set_rights_bad(void) { return w_fd_fdstat_set_rights(1, 1ull << 40, 0); }
static int32_t shutdown_bad_how(void) { return w_sock_shutdown(1, 4); }
static int32_t recv_bad_flags(void) {
    uint32_t n;
    uint16_t f;
    return w_sock_recv(1, (const iovec_t *)scratch, 0, 8, &n, &f);
}
static int32_t exit_126(void) { w_proc_exit(126); }
static int32_t exit_255(void) { w_proc_exit(255); }
static int32_t exit_big(void) { w_proc_exit(0x80000000u); }
static int32_t raise_bad_signal(void) { return w_proc_raise(31); }
static int32_t unreachable(void) { __builtin_trap(); }

static const trap_case CASES[] = {
    {"fdstat-misaligned", fdstat_misaligned},
    {"fdstat-outside", fdstat_outside},
    {"write-iovs-outside", write_iovs_outside},
    {"write-buffer-outside", write_buffer_outside},
    {"write-nwritten-outside", write_nwritten_outside},
    {"read-buffer-outside", read_buffer_outside},
    {"path-outside", path_outside},
    {"opened-fd-outside", opened_fd_outside},
    {"args-outside", args_outside},
    {"random-outside", random_outside},
    {"clock-outside", clock_outside},
    {"clock-misaligned", clock_misaligned},
    {"poll-misaligned", poll_misaligned},
    {"poll-outside", poll_outside},
    {"seek-bad-whence", seek_bad_whence},
    {"advise-bad-advice", advise_bad_advice},
    {"clock-bad-id", clock_bad_id},
    {"res-bad-id", res_bad_id},
    {"set-flags-bad", set_flags_bad},
    {"open-bad-oflags", open_bad_oflags},
    {"open-bad-lookupflags", open_bad_lookupflags},
    {"open-bad-rights", open_bad_rights},
    {"open-bad-fdflags", open_bad_fdflags},
    {"set-times-bad-flags", set_times_bad_flags},
    {"set-rights-bad", set_rights_bad},
    {"shutdown-bad-how", shutdown_bad_how},
    {"recv-bad-flags", recv_bad_flags},
    {"exit-126", exit_126},
    {"exit-255", exit_255},
    {"exit-big", exit_big},
    {"raise-bad-signal", raise_bad_signal},
    {"unreachable", unreachable},
};

int main(int argc, char **argv) {
    if (argc < 2) {
        for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) printf("%s\n", CASES[i].name);
        return 0;
    }
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        if (strcmp(argv[1], CASES[i].name) == 0) {
            printf("case %s\n", CASES[i].name);
            fflush(stdout);
            int32_t e = CASES[i].run();
            printf("survived: %s\n", ename(e));
            return 0;
        }
    }
    printf("no case %s\n", argv[1]);
    return 2;
}
