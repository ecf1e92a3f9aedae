/* Clocks, randomness, yielding and signals: clock_res_get, clock_time_get, random_get, sched_yield, proc_raise. */
#include "corpus.h"

int main(void) {
    section("clock_res_get");
    for (uint32_t id = 0; id < 4; id++) {
        uint64_t res = 0xdeadbeefdeadbeefull;
        int32_t e = w_clock_res_get(id, &res);
        printf("clock_res_get(%u) = %s%s\n", id, ename(e),
               e ? (res == 0xdeadbeefdeadbeefull ? "" : " (touched)") : (res > 0 && res <= 1000000000ull ? " res in (0, 1 s]" : " res out of range"));
    }

    section("clock_time_get");
    for (uint32_t id = 0; id < 4; id++) {
        uint64_t t = 0;
        int32_t e = w_clock_time_get(id, 1, &t);
        printf("clock_time_get(%u) = %s%s\n", id, ename(e), e ? "" : (t > 0 ? " nonzero" : " zero"));
    }
    uint64_t a = 0, b = 0;
    w_clock_time_get(1, 0, &a);
    w_sched_yield();
    w_clock_time_get(1, 0, &b);
    printf("monotonic does not go back: %s\n", b >= a ? "yes" : "no");
    uint64_t wall = 0;
    w_clock_time_get(0, 0, &wall);
    printf("realtime after 2020: %s\n", wall > 1577836800000000000ull ? "yes" : "no");
    uint64_t precision_max = 0;
    CASE("clock_time_get(monotonic, precision 2^64-1)", w_clock_time_get(1, ~0ull, &precision_max));

    section("random_get");
    uint8_t buf[64];
    memset(buf, 0, sizeof buf);
    CASE("random_get(0 bytes)", w_random_get(buf, 0));
    CASE("random_get(64 bytes)", w_random_get(buf, sizeof buf));
    int nonzero = 0;
    for (size_t i = 0; i < sizeof buf; i++) nonzero += buf[i] != 0;
    printf("random bytes mostly nonzero: %s\n", nonzero > 32 ? "yes" : "no");
    uint8_t other[64];
    w_random_get(other, sizeof other);
    printf("two draws differ: %s\n", memcmp(buf, other, sizeof buf) ? "yes" : "no");
    static uint8_t big[1 << 20];
    CASE("random_get(1 MiB)", w_random_get(big, sizeof big));

    section("sched_yield and proc_raise");
    CASE("sched_yield", w_sched_yield());
    CASE("proc_raise(0)", w_proc_raise(0));
    CASE("proc_raise(SIGTERM)", w_proc_raise(15));
    return 0;
}
