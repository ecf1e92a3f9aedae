/*
 * State operations for the cache and consistency benchmarks and tests.
 *
 * Every function takes bincode arguments (u64 lengths, UTF-8 strings) and
 * returns raw bytes:
 *
 *   read_many(key: String, count: u64)      read `key` `count` times; the last value (empty: absent)
 *   ops(count: u64, [kind: u8, key: String, value: Vec<u8>] * count)
 *                                           kind 0 reads `key`, kind 1 merges the encoded
 *                                           LatticeValue `value` into it; u64 reads that found a value
 *   read_key(key: String)                   the value of `key` (empty: absent)
 *   read_call_read(key: String)             reads `key`, calls read_key(key) remotely, reads
 *                                           `key` again: the three values as Vec<u8>s
 *   write_call_read(key: String, value: Vec<u8>)
 *                                           merges `value` into `key`, then calls read_key(key)
 *                                           remotely: what that call read
 *   read_append(key: String, ...)           its arguments followed by the value of `key` as a
 *                                           Vec<u8> (a DAG stage: the next stage reads `key` too)
 *
 * Build: python examples/build.py
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "essa.h"

/* The value of key (a malloc'd buffer, or NULL with *len = 0 if absent); 0 on success. */
static int read_value(const char *key, uint8_t **buf, size_t *len) {
    int32_t rc = essa_kvs_get(key, buf, len);
    if (rc == ESSA_NOT_FOUND) {
        *buf = NULL;
        *len = 0;
        return 0;
    }
    if (rc != ESSA_OK) fprintf(stderr, "reading %s failed: %s\n", key, essa_result_name(rc));
    return rc == ESSA_OK ? 0 : -1;
}

static void set_raw(const uint8_t *data, size_t len) {
    int32_t rc = essa_set_result(len ? data : (const uint8_t *)"", len);
    if (rc != ESSA_OK) fprintf(stderr, "essa_set_result failed: %s\n", essa_result_name(rc));
}

/* Call read_key(key) remotely; its result in a malloc'd *buf. 0 on success. */
static int call_read_key(const char *key, uint8_t **buf, size_t *len) {
    essa_writer w;
    essa_writer_init(&w);
    essa_write_str(&w, key);
    uint32_t handle;
    int32_t rc = w.failed ? ESSA_UNKNOWN_ERROR : essa_call_start("read_key", w.data, w.len, &handle);
    essa_writer_free(&w);
    if (rc == ESSA_OK) rc = essa_call_wait(handle, buf, len);
    if (rc != ESSA_OK) fprintf(stderr, "calling read_key failed: %s\n", essa_result_name(rc));
    return rc == ESSA_OK ? 0 : -1;
}

ESSA_FUNCTION(read_many) {
    uint8_t *args;
    essa_reader r;
    char *key = NULL;
    uint64_t count = 0;
    if (essa_get_args(args_len, &args) != ESSA_OK) return;
    essa_reader_init(&r, args, args_len);
    if (essa_read_string(&r, &key, NULL) != ESSA_OK || essa_read_u64(&r, &count) != ESSA_OK) {
        fprintf(stderr, "read_many: bad arguments\n");
        free(args);
        return;
    }
    uint8_t *value = NULL;
    size_t len = 0;
    int failed = 0;
    for (uint64_t i = 0; i < count && !failed; i++) {
        free(value);
        failed = read_value(key, &value, &len);
    }
    if (!failed) set_raw(value, len);
    free(value);
    free(key);
    free(args);
}

ESSA_FUNCTION(ops) {
    uint8_t *args;
    essa_reader r;
    uint64_t count = 0, found = 0;
    if (essa_get_args(args_len, &args) != ESSA_OK) return;
    essa_reader_init(&r, args, args_len);
    if (essa_read_u64(&r, &count) != ESSA_OK) {
        fprintf(stderr, "ops: bad arguments\n");
        free(args);
        return;
    }
    for (uint64_t i = 0; i < count; i++) {
        const uint8_t *kind, *value;
        size_t value_len;
        char *key = NULL;
        if (essa_read_raw(&r, 1, &kind) != ESSA_OK || essa_read_string(&r, &key, NULL) != ESSA_OK ||
            essa_read_bytes(&r, &value, &value_len) != ESSA_OK) {
            fprintf(stderr, "ops: bad operation %llu\n", (unsigned long long)i);
            free(key);
            free(args);
            return;
        }
        int failed;
        if (*kind == 0) {
            uint8_t *buf;
            size_t len;
            failed = read_value(key, &buf, &len);
            if (!failed && buf) found++;
            free(buf);
        } else {
            int32_t rc = essa_kvs_put_encoded(key, value, value_len);
            if (rc != ESSA_OK) fprintf(stderr, "ops: put %s failed: %s\n", key, essa_result_name(rc));
            failed = rc != ESSA_OK;
        }
        free(key);
        if (failed) {
            free(args);
            return;
        }
    }
    essa_writer w;
    essa_writer_init(&w);
    essa_write_u64(&w, found);
    if (!w.failed) set_raw(w.data, w.len);
    essa_writer_free(&w);
    free(args);
}

ESSA_FUNCTION(read_key) {
    uint8_t *args;
    essa_reader r;
    char *key = NULL;
    if (essa_get_args(args_len, &args) != ESSA_OK) return;
    essa_reader_init(&r, args, args_len);
    if (essa_read_string(&r, &key, NULL) != ESSA_OK) {
        fprintf(stderr, "read_key: bad arguments\n");
        free(args);
        return;
    }
    uint8_t *value;
    size_t len;
    if (read_value(key, &value, &len) == 0) set_raw(value, len);
    free(value);
    free(key);
    free(args);
}

ESSA_FUNCTION(read_call_read) {
    uint8_t *args;
    essa_reader r;
    char *key = NULL;
    if (essa_get_args(args_len, &args) != ESSA_OK) return;
    essa_reader_init(&r, args, args_len);
    if (essa_read_string(&r, &key, NULL) != ESSA_OK) {
        fprintf(stderr, "read_call_read: bad arguments\n");
        free(args);
        return;
    }
    uint8_t *values[3] = {NULL, NULL, NULL};
    size_t lens[3] = {0, 0, 0};
    if (read_value(key, &values[0], &lens[0]) == 0 && call_read_key(key, &values[1], &lens[1]) == 0 &&
        read_value(key, &values[2], &lens[2]) == 0) {
        essa_writer w;
        essa_writer_init(&w);
        for (int i = 0; i < 3; i++) essa_write_bytes(&w, values[i], lens[i]);
        if (!w.failed) set_raw(w.data, w.len);
        essa_writer_free(&w);
    }
    for (int i = 0; i < 3; i++) free(values[i]);
    free(key);
    free(args);
}

ESSA_FUNCTION(write_call_read) {
    uint8_t *args;
    essa_reader r;
    char *key = NULL;
    const uint8_t *value;
    size_t value_len;
    if (essa_get_args(args_len, &args) != ESSA_OK) return;
    essa_reader_init(&r, args, args_len);
    if (essa_read_string(&r, &key, NULL) != ESSA_OK || essa_read_bytes(&r, &value, &value_len) != ESSA_OK) {
        fprintf(stderr, "write_call_read: bad arguments\n");
        free(args);
        return;
    }
    int32_t rc = essa_kvs_put_encoded(key, value, value_len);
    if (rc != ESSA_OK) {
        fprintf(stderr, "write_call_read: put failed: %s\n", essa_result_name(rc));
    } else {
        uint8_t *seen;
        size_t len;
        if (call_read_key(key, &seen, &len) == 0) {
            set_raw(seen, len);
            free(seen);
        }
    }
    free(key);
    free(args);
}

ESSA_FUNCTION(read_append) {
    uint8_t *args;
    essa_reader r;
    char *key = NULL;
    if (essa_get_args(args_len, &args) != ESSA_OK) return;
    essa_reader_init(&r, args, args_len);
    if (essa_read_string(&r, &key, NULL) != ESSA_OK) {
        fprintf(stderr, "read_append: bad arguments\n");
        free(args);
        return;
    }
    uint8_t *value;
    size_t len;
    if (read_value(key, &value, &len) == 0) {
        essa_writer w;
        essa_writer_init(&w);
        essa_write_raw(&w, args, args_len);
        essa_write_bytes(&w, value, len);
        if (!w.failed) set_raw(w.data, w.len);
        essa_writer_free(&w);
    }
    free(value);
    free(key);
    free(args);
}

/* A module needs a _start for `essa run`; this one only hosts the functions above. */
int main(void) {
    fprintf(stderr, "state-ops: call its functions (read_many, ops, read_key, read_call_read, write_call_read, read_append)\n");
    return 0;
}
