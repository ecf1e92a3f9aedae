/* poll_oneoff: clocks (relative, absolute, each clock id), descriptors (files, stdin, stdout,
 * directories, bad ones), mixtures, and malformed subscriptions. */
#include "corpus.h"

#define MONO 1
#define REAL 0

static subscription_t clock_sub(uint64_t userdata, uint32_t id, uint64_t timeout, uint16_t flags) {
    subscription_t s;
    memset(&s, 0, sizeof s);
    s.userdata = userdata;
    s.tag = 0;
    s.u.clock.id = id;
    s.u.clock.timeout = timeout;
    s.u.clock.flags = flags;
    return s;
}

static subscription_t fd_sub(uint64_t userdata, uint8_t tag, uint32_t fd) {
    subscription_t s;
    memset(&s, 0, sizeof s);
    s.userdata = userdata;
    s.tag = tag;
    s.u.fd_readwrite.fd = fd;
    return s;
}

static uint64_t now(uint32_t id) {
    uint64_t t = 0;
    w_clock_time_get(id, 0, &t);
    return t;
}

static void poll_case(const char *label, const subscription_t *subs, uint32_t n) {
    event_t events[8];
    memset(events, 0xcd, sizeof events);
    uint32_t count = SENTINEL;
    int32_t e = w_poll_oneoff(subs, events, n, &count);
    if (e) {
        printf("%s = %s%s\n", label, ename(e), count == SENTINEL ? "" : " (nevents touched)");
        return;
    }
    printf("%s = OK %u event(s)", label, count);
    for (uint32_t i = 0; i < count && i < 8; i++)
        printf(" [userdata=%llu error=%s type=%u nbytes=%llu flags=%u]", (unsigned long long)events[i].userdata,
               ename(events[i].error), events[i].type, (unsigned long long)events[i].nbytes, events[i].flags);
    printf("\n");
}

int main(void) {
    section("clocks");
    subscription_t s[4];
    poll_case("no subscriptions", s, 0);
    s[0] = clock_sub(11, MONO, 1000000, 0);
    poll_case("monotonic 1 ms", s, 1);
    s[0] = clock_sub(12, REAL, 1000000, 0);
    poll_case("realtime 1 ms", s, 1);
    s[0] = clock_sub(13, 2, 1000000, 0);
    poll_case("process cputime 1 ms", s, 1);
    s[0] = clock_sub(14, 3, 1000000, 0);
    poll_case("thread cputime 1 ms", s, 1);
    s[0] = clock_sub(15, 7, 1000000, 0);
    poll_case("clock 7", s, 1);
    s[0] = clock_sub(16, MONO, now(MONO) + 1000000, 1);
    poll_case("monotonic absolute now + 1 ms", s, 1);
    s[0] = clock_sub(17, MONO, 0, 1);
    poll_case("monotonic absolute 0", s, 1);
    s[0] = clock_sub(18, REAL, now(REAL) - 1000000000ull, 1);
    s[1] = clock_sub(19, MONO, 300000000, 0);
    poll_case("realtime absolute in the past, monotonic 300 ms", s, 2);
    s[0] = clock_sub(20, MONO, 0, 0);
    poll_case("monotonic 0", s, 1);
    s[0] = clock_sub(21, MONO, 1000000, 0);
    s[1] = clock_sub(22, MONO, 60000000000ull, 0);
    poll_case("1 ms and 60 s", s, 2);
    s[0] = clock_sub(23, MONO, 0, 0);
    s[1] = clock_sub(24, MONO, 0, 0);
    s[2] = clock_sub(25, MONO, 60000000000ull, 0);
    poll_case("0, 0 and 60 s", s, 3);
    s[0] = clock_sub(26, MONO, 1000000, 2);
    poll_case("bad subclock flags", s, 1);
    s[0] = clock_sub(27, MONO, 1000000, 0);
    s[0].tag = 3;
    poll_case("bad event type", s, 1);
    s[0] = clock_sub(28, MONO, 1000000, 0);
    s[1] = clock_sub(29, 2, 1000000, 0);
    poll_case("monotonic and process cputime", s, 2);
    s[0] = clock_sub(30, REAL, 1000000, 0);
    s[1] = clock_sub(31, MONO, 60000000000ull, 0);
    poll_case("realtime 1 ms and monotonic 60 s", s, 2);

    section("descriptors");
    int32_t file = OPEN("open hello.txt", SANDBOX, "hello.txt", 0, R_READ, 0);
    int32_t empty = OPEN("open empty.txt", SANDBOX, "empty.txt", 0, R_READ, 0);
    int32_t out = OPEN("open out.txt", SANDBOX, "out.txt", O_CREAT_, R_RW, 0);
    int32_t ro = OPEN("open ro data.txt", RO, "data.txt", 0, R_READ, 0);
    int32_t dir = OPEN("open sub", SANDBOX, "sub", O_DIRECTORY_, R_READ, 0);
    s[0] = fd_sub(40, 1, (uint32_t)file);
    poll_case("read hello.txt at 0", s, 1);
    seek_case("seek hello.txt to end", (uint32_t)file, 0, 2);
    poll_case("read hello.txt at end", s, 1);
    s[0] = fd_sub(41, 1, (uint32_t)empty);
    poll_case("read empty.txt", s, 1);
    s[0] = fd_sub(42, 2, (uint32_t)out);
    poll_case("write out.txt", s, 1);
    s[0] = fd_sub(43, 2, (uint32_t)file);
    poll_case("write hello.txt (opened read-only)", s, 1);
    s[0] = fd_sub(44, 2, (uint32_t)ro);
    poll_case("write ro data.txt", s, 1);
    s[0] = fd_sub(45, 1, (uint32_t)out);
    poll_case("read out.txt (opened read-write)", s, 1);
    s[0] = fd_sub(46, 1, (uint32_t)dir);
    poll_case("read a directory", s, 1);
    s[0] = fd_sub(47, 1, SANDBOX);
    poll_case("read the preopen", s, 1);
    s[0] = fd_sub(48, 2, 1);
    poll_case("write stdout", s, 1);
    s[0] = fd_sub(49, 2, 2);
    poll_case("write stderr", s, 1);
    s[0] = fd_sub(50, 1, 1);
    poll_case("read stdout", s, 1);
    s[0] = fd_sub(51, 2, 0);
    poll_case("write stdin", s, 1);
    s[0] = fd_sub(52, 1, 99);
    poll_case("read fd 99", s, 1);
    s[0] = fd_sub(53, 2, 99);
    poll_case("write fd 99", s, 1);
    /* Descriptors ready at once are reported, clocks not yet due are not. (A file to read,
     * mixed with other ready subscriptions, is left out: wasmtime reports it or not by a race.) */
    s[0] = clock_sub(54, MONO, 60000000000ull, 0);
    s[1] = fd_sub(55, 2, 1);
    s[2] = fd_sub(56, 2, 2);
    s[3] = fd_sub(63, 2, (uint32_t)out);
    poll_case("60 s, stdout, stderr, out.txt", s, 4);
    s[0] = fd_sub(64, 2, 1);
    s[1] = clock_sub(65, MONO, 0, 0);
    poll_case("stdout and 0 s (the clock fires only after a wait)", s, 2);
    s[0] = clock_sub(66, MONO, 60000000000ull, 0);
    s[1] = fd_sub(67, 1, (uint32_t)file);
    poll_case("60 s and hello.txt", s, 2);
    s[0] = clock_sub(57, MONO, 0, 0);
    s[1] = fd_sub(58, 1, 99);
    poll_case("0 s and fd 99", s, 2);
    s[0] = fd_sub(59, 2, 1);
    s[1] = clock_sub(60, 9, 0, 0);
    poll_case("stdout and clock 9", s, 2);

    section("stdin");
    s[0] = fd_sub(61, 1, 0);
    poll_case("read stdin", s, 1);
    read_case("fd_read(0)", 0, 100);
    poll_case("read stdin again", s, 1);
    read_case("fd_read(0) again", 0, 100);
    s[1] = clock_sub(62, MONO, 60000000000ull, 0);
    poll_case("read stdin or 60 s", s, 2);
    CASE("close stdin", w_fd_close(0));
    poll_case("read closed stdin", s, 1);
    return 0;
}
