/* Arguments and environment: args_sizes_get, args_get, environ_sizes_get, environ_get. */
#include "corpus.h"

static void show_strings(const char *what, uint32_t count, uint8_t **ptrs, const uint8_t *buf, uint32_t size) {
    for (uint32_t i = 0; i < count; i++) {
        printf("%s[%u] at +%ld = \"", what, i, (long)(ptrs[i] - buf));
        for (const uint8_t *c = ptrs[i]; *c; c++) {
            if (*c >= 32 && *c < 127 && *c != '"' && *c != '\\') putchar(*c);
            else printf("\\x%02x", *c);
        }
        printf("\"\n");
    }
    printf("%s buffer ends with NUL: %s\n", what, size == 0 || buf[size - 1] == 0 ? "yes" : "no");
}

int main(void) {
    section("args");
    uint32_t argc = SENTINEL, size = SENTINEL;
    CASE("args_sizes_get", w_args_sizes_get(&argc, &size));
    printf("argc=%u size=%u\n", argc, size);
    uint8_t **argv = calloc(argc + 1, sizeof *argv);
    uint8_t *buf = calloc(size + 1, 1);
    CASE("args_get", w_args_get(argv, buf));
    show_strings("argv", argc, argv, buf, size);

    section("environ");
    uint32_t count = SENTINEL, env_size = SENTINEL;
    CASE("environ_sizes_get", w_environ_sizes_get(&count, &env_size));
    printf("count=%u size=%u\n", count, env_size);
    uint8_t **env = calloc(count + 1, sizeof *env);
    uint8_t *env_buf = calloc(env_size + 1, 1);
    CASE("environ_get", w_environ_get(env, env_buf));
    show_strings("environ", count, env, env_buf, env_size);

    /* What wasi-libc made of them. */
    section("libc");
    printf("getenv(GREETING) = %s\n", getenv("GREETING") ? getenv("GREETING") : "(null)");
    printf("getenv(MISSING) = %s\n", getenv("MISSING") ? getenv("MISSING") : "(null)");
    return 0;
}
