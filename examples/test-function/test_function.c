/*
 * The essa test function, in C: a port of essa-rs's `test-function` example.
 *
 * `main` runs as the module's `_start`; it calls the functions below remotely
 * (each call runs in a fresh instance, possibly on another executor) and
 * reads and merges Set values in the key-value store. Arguments and results
 * are bincode-encoded exactly as Rust's #[essa_wrap] would encode them, so a
 * Rust build of the same functions is interchangeable with this one.
 *
 * Any failure prints a message naming the failed step and the EssaResult to
 * stderr and exits with status 1.
 *
 * Build: python examples/build.py
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "essa.h"

/* ------------------------------------------------------------------------ */
/* Encoding helpers                                                          */
/* ------------------------------------------------------------------------ */

/* Fetch the current call's arguments into a malloc'd buffer and start a reader over them. */
static int32_t read_args(uint32_t args_len, uint8_t **buf, essa_reader *r) {
    int32_t rc = essa_get_args(args_len, buf);
    if (rc == ESSA_OK) essa_reader_init(r, *buf, args_len);
    return rc;
}

/* Set the current call's result to a bincode String. */
static int32_t set_string_result(const char *s, size_t len) {
    essa_writer w;
    essa_writer_init(&w);
    essa_write_bytes(&w, s, len);
    int32_t rc = w.failed ? ESSA_UNKNOWN_ERROR : essa_set_result(w.data, w.len);
    essa_writer_free(&w);
    return rc;
}

/* Decode a whole buffer that holds one bincode String. */
static int32_t decode_string(const uint8_t *buf, size_t len, char **out, size_t *out_len) {
    essa_reader r;
    essa_reader_init(&r, buf, len);
    return essa_read_string(&r, out, out_len);
}

/* Print bytes like Rust's `{:?}` prints a string: quoted, with escapes. */
static void print_debug_str(FILE *f, const uint8_t *s, size_t len) {
    fputc('"', f);
    for (size_t i = 0; i < len; i++) {
        uint8_t c = s[i];
        switch (c) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        default:
            if (c < 0x20 || c == 0x7f) fprintf(f, "\\u{%x}", c);
            else fputc(c, f);
        }
    }
    fputc('"', f);
}

/* Bytewise order for byte strings (shorter prefix first). */
static int compare_bytes(const void *a, const void *b) {
    const essa_bytes *x = (const essa_bytes *)a, *y = (const essa_bytes *)b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = n ? memcmp(x->data, y->data, n) : 0;
    if (c != 0) return c;
    return (x->len > y->len) - (x->len < y->len);
}

/* ------------------------------------------------------------------------ */
/* Remotely callable functions                                               */
/* ------------------------------------------------------------------------ */

/*
 * to_uppercase(val: String) -> String
 * ASCII upper-casing (the Rust original used str::to_uppercase).
 */
ESSA_FUNCTION(to_uppercase) {
    uint8_t *args;
    essa_reader r;
    char *val;
    size_t len;
    int32_t rc = read_args(args_len, &args, &r);
    if (rc != ESSA_OK) {
        fprintf(stderr, "to_uppercase: essa_get_args failed: %s\n", essa_result_name(rc));
        return;
    }
    rc = essa_read_string(&r, &val, &len);
    free(args);
    if (rc != ESSA_OK) {
        fprintf(stderr, "to_uppercase: decoding the argument failed: %s\n", essa_result_name(rc));
        return;
    }
    for (size_t i = 0; i < len; i++)
        if (val[i] >= 'a' && val[i] <= 'z') val[i] = (char)(val[i] - 'a' + 'A');
    rc = set_string_result(val, len);
    if (rc != ESSA_OK)
        fprintf(stderr, "to_uppercase: essa_set_result failed: %s\n", essa_result_name(rc));
    free(val);
}

/*
 * foo(val: String) -> String — essa-rs's `append_foo`: returns val + " fooo".
 */
ESSA_FUNCTION(foo) {
    static const char suffix[] = " fooo";
    uint8_t *args;
    essa_reader r;
    const uint8_t *val;
    size_t len;
    int32_t rc = read_args(args_len, &args, &r);
    if (rc != ESSA_OK) {
        fprintf(stderr, "foo: essa_get_args failed: %s\n", essa_result_name(rc));
        return;
    }
    rc = essa_read_bytes(&r, &val, &len);
    if (rc != ESSA_OK || !essa_utf8_valid(val, len)) {
        fprintf(stderr, "foo: decoding the argument failed: %s\n",
                essa_result_name(rc != ESSA_OK ? rc : ESSA_INVALID_RESULT));
        free(args);
        return;
    }
    essa_writer w;
    essa_writer_init(&w);
    essa_write_u64(&w, (uint64_t)(len + sizeof(suffix) - 1));
    essa_write_raw(&w, val, len);
    essa_write_raw(&w, suffix, sizeof(suffix) - 1);
    free(args);
    rc = w.failed ? ESSA_UNKNOWN_ERROR : essa_set_result(w.data, w.len);
    if (rc != ESSA_OK) fprintf(stderr, "foo: essa_set_result failed: %s\n", essa_result_name(rc));
    essa_writer_free(&w);
}

/*
 * repeat_string(string: String, count: usize) -> String
 */
ESSA_FUNCTION(repeat_string) {
    uint8_t *args;
    essa_reader r;
    const uint8_t *s;
    size_t len;
    uint64_t count;
    int32_t rc = read_args(args_len, &args, &r);
    if (rc != ESSA_OK) {
        fprintf(stderr, "repeat_string: essa_get_args failed: %s\n", essa_result_name(rc));
        return;
    }
    if (essa_read_bytes(&r, &s, &len) != ESSA_OK || !essa_utf8_valid(s, len) ||
        essa_read_u64(&r, &count) != ESSA_OK) {
        fprintf(stderr, "repeat_string: decoding the arguments failed: %s\n",
                essa_result_name(ESSA_INVALID_RESULT));
        free(args);
        return;
    }
    if (len != 0 && count > (uint64_t)(SIZE_MAX / 2) / len) {
        fprintf(stderr, "repeat_string: result too large (%zu bytes x %llu)\n", len,
                (unsigned long long)count);
        free(args);
        return;
    }
    essa_writer w;
    essa_writer_init(&w);
    essa_write_u64(&w, (uint64_t)len * count);
    for (uint64_t i = 0; i < count && !w.failed; i++) essa_write_raw(&w, s, len);
    free(args);
    rc = w.failed ? ESSA_UNKNOWN_ERROR : essa_set_result(w.data, w.len);
    if (rc != ESSA_OK)
        fprintf(stderr, "repeat_string: essa_set_result failed: %s\n", essa_result_name(rc));
    essa_writer_free(&w);
}

/* Encode the arguments of concurrent_kvs_test(key: String, range_start: usize, range_end: usize). */
static void write_kvs_test_args(essa_writer *w, const char *key, uint64_t start, uint64_t end) {
    essa_write_str(w, key);
    essa_write_u64(w, start);
    essa_write_u64(w, end);
}

/*
 * Decode a Result<(), String> (u32 variant 0 = Ok, 1 = Err + String).
 * Returns ESSA_OK and sets *err to NULL for Ok, or to a malloc'd message for Err.
 */
static int32_t decode_unit_result(const uint8_t *buf, size_t len, char **err) {
    essa_reader r;
    uint32_t variant;
    essa_reader_init(&r, buf, len);
    int32_t rc = essa_read_u32(&r, &variant);
    if (rc != ESSA_OK) return rc;
    if (variant == 0) {
        *err = NULL;
        return ESSA_OK;
    }
    if (variant != 1) return ESSA_INVALID_RESULT;
    return essa_read_string(&r, err, NULL);
}

/* Set the current call's result to Ok(()) (msg == NULL) or Err(msg). */
static void set_unit_result(const char *msg) {
    essa_writer w;
    essa_writer_init(&w);
    if (msg == NULL) {
        essa_write_u32(&w, 0);
    } else {
        essa_write_u32(&w, 1);
        essa_write_str(&w, msg);
    }
    int32_t rc = w.failed ? ESSA_UNKNOWN_ERROR : essa_set_result(w.data, w.len);
    if (rc != ESSA_OK)
        fprintf(stderr, "concurrent_kvs_test: essa_set_result failed: %s\n", essa_result_name(rc));
    essa_writer_free(&w);
}

/* Set the result to Err("<what> failed: <EssaResult name>"). */
static void set_unit_error(const char *what, int32_t rc) {
    char msg[256];
    snprintf(msg, sizeof msg, "%s failed: %s", what, essa_result_name(rc));
    set_unit_result(msg);
}

/*
 * concurrent_kvs_test(key: String, range_start: usize, range_end: usize) -> Result<(), String>
 *
 * Merges the Set {decimal string of n} into `key` for every n in
 * [range_start, range_end): a range of one element is stored directly; a
 * larger range is split in halves and the function calls itself remotely on
 * both (both calls started before waiting on either). Errors of the nested
 * calls propagate as Err(String).
 */
ESSA_FUNCTION(concurrent_kvs_test) {
    uint8_t *args;
    essa_reader r;
    char *key;
    uint64_t start, end;
    int32_t rc = read_args(args_len, &args, &r);
    if (rc != ESSA_OK) {
        set_unit_error("concurrent_kvs_test: essa_get_args", rc);
        return;
    }
    rc = essa_read_string(&r, &key, NULL);
    if (rc == ESSA_OK && (essa_read_u64(&r, &start) != ESSA_OK || essa_read_u64(&r, &end) != ESSA_OK)) {
        free(key);
        rc = ESSA_INVALID_RESULT;
    }
    free(args);
    if (rc != ESSA_OK) {
        set_unit_error("concurrent_kvs_test: decoding the arguments", rc);
        return;
    }
    if (end < start) {
        set_unit_result("concurrent_kvs_test: range_end is smaller than range_start");
        free(key);
        return;
    }

    if (end - start <= 1) {
        if (end - start == 1) {
            char member[24];
            const char *members[1] = {member};
            snprintf(member, sizeof member, "%llu", (unsigned long long)start);
            rc = essa_kvs_put_set_strs(key, members, 1);
            if (rc != ESSA_OK) {
                set_unit_error("concurrent_kvs_test: essa_put_lattice", rc);
                free(key);
                return;
            }
        }
        set_unit_result(NULL);
        free(key);
        return;
    }

    uint64_t mid = start + (end - start) / 2;
    uint64_t bounds[2][2] = {{start, mid}, {mid, end}};
    uint32_t handles[2];
    for (int i = 0; i < 2; i++) {
        essa_writer w;
        essa_writer_init(&w);
        write_kvs_test_args(&w, key, bounds[i][0], bounds[i][1]);
        rc = w.failed ? ESSA_UNKNOWN_ERROR
                      : essa_call_start("concurrent_kvs_test", w.data, w.len, &handles[i]);
        essa_writer_free(&w);
        if (rc != ESSA_OK) {
            set_unit_error("concurrent_kvs_test: essa_call", rc);
            free(key);
            return;
        }
    }
    free(key);
    for (int i = 0; i < 2; i++) {
        uint8_t *res;
        size_t res_len;
        char *err;
        rc = essa_call_wait(handles[i], &res, &res_len);
        if (rc != ESSA_OK) {
            set_unit_error("concurrent_kvs_test: waiting for a nested call", rc);
            return;
        }
        rc = decode_unit_result(res, res_len, &err);
        free(res);
        if (rc != ESSA_OK) {
            set_unit_error("concurrent_kvs_test: decoding a nested result", rc);
            return;
        }
        if (err != NULL) {
            set_unit_result(err); /* propagate the nested Err */
            free(err);
            return;
        }
    }
    set_unit_result(NULL);
}

/* ------------------------------------------------------------------------ */
/* main                                                                      */
/* ------------------------------------------------------------------------ */

/* Report a failed step on stderr and exit with status 1. */
static void fail(const char *what, int32_t rc) {
    fflush(stdout);
    fprintf(stderr, "test function: %s failed: %s (%d)\n", what, essa_result_name(rc), (int)rc);
    exit(1);
}

/* Start a remote call of `function` with the given encoded arguments; exits on failure. */
static uint32_t start_call(const char *function, essa_writer *args) {
    char what[128];
    uint32_t handle = 0;
    snprintf(what, sizeof what, "calling %s (essa_call)", function);
    if (args->failed) fail(what, ESSA_UNKNOWN_ERROR);
    int32_t rc = essa_call_start(function, args->data, args->len, &handle);
    if (rc != ESSA_OK) fail(what, rc);
    essa_writer_free(args);
    return handle;
}

/* Wait for a call that returns a String; exits on failure. */
static char *wait_string(const char *function, uint32_t handle, size_t *len) {
    char what[128];
    uint8_t *buf;
    size_t buf_len;
    char *s;
    snprintf(what, sizeof what, "waiting for the result of %s", function);
    int32_t rc = essa_call_wait(handle, &buf, &buf_len);
    if (rc != ESSA_OK) fail(what, rc);
    snprintf(what, sizeof what, "decoding the result of %s", function);
    rc = decode_string(buf, buf_len, &s, len);
    free(buf);
    if (rc != ESSA_OK) fail(what, rc);
    return s;
}

/* Call a String -> String style function with one String argument and wait. */
static char *call_string_fn(const char *function, const char *arg, size_t *len) {
    essa_writer w;
    essa_writer_init(&w);
    essa_write_str(&w, arg);
    uint32_t handle = start_call(function, &w);
    printf("Waiting for result...\n");
    return wait_string(function, handle, len);
}

/* Read the Set under `key` and print it as Result: {"a", "b"} (sorted bytewise). */
static void print_set(const char *key) {
    essa_bytes *members;
    size_t count;
    char what[128];
    snprintf(what, sizeof what, "reading the set under key \"%s\"", key);
    int32_t rc = essa_kvs_get_set(key, &members, &count);
    if (rc != ESSA_OK) fail(what, rc);
    qsort(members, count, sizeof *members, compare_bytes);
    printf("Result: {");
    for (size_t i = 0; i < count; i++) {
        if (i) printf(", ");
        print_debug_str(stdout, members[i].data, members[i].len);
    }
    printf("}\n");
    essa_set_free(members, count);
}

#define SET_KEY "some-test-key"
#define CONCURRENT_KEY "concurrent-kvs_test-key"
#define CONCURRENT_START 48
#define CONCURRENT_END 113

/* Check that the Set under CONCURRENT_KEY holds exactly the decimal strings of [48, 113). */
static void check_concurrent_set(void) {
    enum { N = CONCURRENT_END - CONCURRENT_START };
    essa_bytes *members;
    size_t count;
    int seen[N] = {0};
    int32_t rc = essa_kvs_get_set(CONCURRENT_KEY, &members, &count);
    if (rc != ESSA_OK) fail("reading the concurrent KVS test set under key \"" CONCURRENT_KEY "\"", rc);
    int ok = 1;
    if (count != N) {
        fprintf(stderr, "test function: concurrent KVS test set has %zu members, expected %d (the decimal strings of %d..%d)\n",
                count, N, CONCURRENT_START, CONCURRENT_END - 1);
        ok = 0;
    }
    for (size_t i = 0; i < count; i++) {
        char expected[24];
        unsigned long n = 0;
        int valid = members[i].len > 0 && members[i].len < 8;
        for (size_t k = 0; valid && k < members[i].len; k++) {
            uint8_t c = members[i].data[k];
            if (c < '0' || c > '9') valid = 0;
            else n = n * 10 + (c - '0');
        }
        if (valid) {
            snprintf(expected, sizeof expected, "%lu", n);
            valid = strlen(expected) == members[i].len && n >= CONCURRENT_START &&
                    n < CONCURRENT_END && !seen[n - CONCURRENT_START];
        }
        if (!valid) {
            fprintf(stderr, "test function: concurrent KVS test set has an unexpected member ");
            print_debug_str(stderr, members[i].data, members[i].len);
            fputc('\n', stderr);
            ok = 0;
        } else {
            seen[n - CONCURRENT_START] = 1;
        }
    }
    for (int i = 0; i < N; i++) {
        if (!seen[i]) {
            fprintf(stderr, "test function: concurrent KVS test set lacks \"%d\"\n", CONCURRENT_START + i);
            ok = 0;
        }
    }
    essa_set_free(members, count);
    if (!ok) {
        fflush(stdout);
        fprintf(stderr, "test function: concurrent KVS test result check failed\n");
        exit(1);
    }
}

int main(void) {
    int32_t rc;
    size_t len;

    printf("Hello world from test function!\n");

    /* 1. to_uppercase("foobar") */
    char *upper = call_string_fn("to_uppercase", "foobar", &len);
    printf("Function result: ");
    print_debug_str(stdout, (const uint8_t *)upper, len);
    printf("\n");

    /* 2. store a set */
    printf("Storing a set in the kvs\n");
    {
        const char *members[] = {"one", "two", "three"};
        rc = essa_kvs_put_set_strs(SET_KEY, members, 3);
        if (rc != ESSA_OK) fail("storing a set under key \"" SET_KEY "\" (essa_put_lattice)", rc);
    }

    /* 3. foo (append_foo) on the result */
    char *fooed = call_string_fn("foo", upper, &len);
    printf("Function result: %s\n", fooed);
    free(upper);

    /* 4. read the set back */
    printf("Reading the set from the kvs\n");
    print_set(SET_KEY);

    /* 5. merge more members into the set */
    printf("Appending to the set in the kvs\n");
    {
        const char *members[] = {"four", "two", "three"};
        rc = essa_kvs_put_set_strs(SET_KEY, members, 3);
        if (rc != ESSA_OK) fail("appending to the set under key \"" SET_KEY "\" (essa_put_lattice)", rc);
    }

    /* 6. repeat_string(result, 15000) */
    {
        essa_writer w;
        essa_writer_init(&w);
        essa_write_str(&w, fooed);
        essa_write_u64(&w, 15000);
        uint32_t handle = start_call("repeat_string", &w);
        printf("Waiting for result...\n");
        char *repeated = wait_string("repeat_string", handle, &len);
        printf("Function result: %zu\n", len);
        free(repeated);
    }
    free(fooed);

    /* 7. read the merged set */
    printf("Reading the set from the kvs\n");
    print_set(SET_KEY);

    /* 8. recursive fan-out merging into one set */
    printf("Running concurrent KVS test\n");
    {
        essa_writer w;
        essa_writer_init(&w);
        write_kvs_test_args(&w, CONCURRENT_KEY, CONCURRENT_START, CONCURRENT_END);
        uint32_t handle = start_call("concurrent_kvs_test", &w);
        uint8_t *res;
        size_t res_len;
        char *err;
        rc = essa_call_wait(handle, &res, &res_len);
        if (rc != ESSA_OK) fail("waiting for the result of concurrent_kvs_test", rc);
        rc = decode_unit_result(res, res_len, &err);
        free(res);
        if (rc != ESSA_OK) fail("decoding the result of concurrent_kvs_test", rc);
        if (err != NULL) {
            fflush(stdout);
            fprintf(stderr, "test function: concurrent_kvs_test returned Err: %s\n", err);
            free(err);
            return 1;
        }
    }

    /* 9. check the result set */
    printf("Reading the concurrent KVS test result set from the kvs\n");
    check_concurrent_set();

    printf("DONE\n");
    return 0;
}
