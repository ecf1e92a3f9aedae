/* Sockets (none exist, so every call is refused) and proc_exit with the status in argv[1]. */
#include "corpus.h"

int main(int argc, char **argv) {
    section("sockets");
    uint32_t fds[] = {0, 1, SANDBOX, 99};
    for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++) {
        uint32_t fd = fds[i];
        uint32_t accepted = SENTINEL, n = SENTINEL;
        uint16_t roflags = 0xabcd;
        uint8_t buf[8];
        iovec_t iov = {buf, sizeof buf};
        ciovec_t ciov = {buf, sizeof buf};
        int32_t a = w_sock_accept(fd, 0, &accepted);
        int32_t r = w_sock_recv(fd, &iov, 1, 0, &n, &roflags);
        int32_t s = w_sock_send(fd, &ciov, 1, 0, &n);
        int32_t h = w_sock_shutdown(fd, 3);
        printf("fd %u: sock_accept = %s, sock_recv = %s, sock_send = %s, sock_shutdown = %s%s\n", fd, ename(a),
               ename(r), ename(s), ename(h), accepted == SENTINEL && n == SENTINEL ? "" : " (results touched)");
    }
    int32_t file = OPEN("open hello.txt", SANDBOX, "hello.txt", 0, R_READ, 0);
    uint32_t accepted = SENTINEL;
    CASE("sock_accept(file)", w_sock_accept((uint32_t)file, 0, &accepted));
    CASE("sock_accept(NONBLOCK)", w_sock_accept(0, FL_NONBLOCK, &accepted));
    CASE("sock_shutdown(RD)", w_sock_shutdown((uint32_t)file, 1));

    section("exit");
    uint32_t status = argc > 1 ? (uint32_t)strtoul(argv[1], NULL, 0) : 0;
    printf("exiting with %u\n", status);
    finish(status);
}
