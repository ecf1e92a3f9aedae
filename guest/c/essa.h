/*
 * essa.h — C guest SDK for essa (header-only).
 *
 * Include this header in a C file compiled for wasm32-wasi to write essa
 * functions: functions that can be called remotely on other executors, that
 * call other functions of the same module remotely, and that share state in
 * essa's lattice key-value store.
 *
 *     #include "essa.h"
 *
 *     ESSA_FUNCTION(to_uppercase) {        // exported as __essa_wrapper__to_uppercase
 *         uint8_t *args;                   // `args_len` is the parameter
 *         if (essa_get_args(args_len, &args) != ESSA_OK) return;
 *         ...
 *         essa_set_result(out, out_len);
 *     }
 *
 * Everything here follows essa's guest ABI (docs/abi.md in the essa
 * repository) and the byte encoding of lattice values
 * (docs/lattice-encoding.md), so C guests interoperate with guests built with
 * the Rust SDK of essa-rs: arguments, results and KVS values use serde + bincode
 * 1.x encoding (fixed-width little-endian integers, u64 length prefixes,
 * `usize` is always u64).
 *
 * Conventions:
 *  - Every function that can fail returns an EssaResult code (ESSA_OK = 0);
 *    use essa_result_name() to print it.
 *  - Functions with "_out" parameters only write them on ESSA_OK.
 *  - Buffers returned through "_out" parameters are malloc'd and owned by the
 *    caller (free() them), unless documented otherwise.
 *
 * All functions are `static inline`; nothing needs to be linked besides
 * wasi-libc. Build with, for example:
 *
 *     python -m ziglang cc -target wasm32-wasi -O2 -g0 -I guest/c f.c -o f.wasm
 *     python -m essa.wasm.debuginfo f.wasm     (drops debug info, keeps function names)
 */
#ifndef ESSA_H
#define ESSA_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef __wasi__
#include <wasi/api.h>
#else
#include <time.h>
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Result codes                                                              */
/* ------------------------------------------------------------------------ */

/** Result codes of the essa host ABI (contract values; -7 is unused). */
typedef enum EssaResult {
    ESSA_OK = 0,
    ESSA_UNKNOWN_ERROR = -1,
    ESSA_NO_SUCH_FUNCTION = -2,
    ESSA_BUFFER_TOO_SMALL = -3,
    ESSA_NOT_FOUND = -4,
    ESSA_INVALID_FUNCTION_SIGNATURE = -5,
    ESSA_NO_RESULT = -6,
    ESSA_INVALID_RESULT = -8,
} EssaResult;

/**
 * The name of an EssaResult code as essa-rs spells it ("Ok", "NotFound", ...),
 * for error messages. Unknown codes give "UnknownErrorCode".
 */
static inline const char *essa_result_name(int32_t code) {
    switch (code) {
    case ESSA_OK: return "Ok";
    case ESSA_UNKNOWN_ERROR: return "UnknownError";
    case ESSA_NO_SUCH_FUNCTION: return "NoSuchFunction";
    case ESSA_BUFFER_TOO_SMALL: return "BufferTooSmall";
    case ESSA_NOT_FOUND: return "NotFound";
    case ESSA_INVALID_FUNCTION_SIGNATURE: return "InvalidFunctionSignature";
    case ESSA_NO_RESULT: return "NoResult";
    case ESSA_INVALID_RESULT: return "InvalidResult";
    default: return "UnknownErrorCode";
    }
}

/* ------------------------------------------------------------------------ */
/* Raw host imports (module "host")                                          */
/* ------------------------------------------------------------------------ */
/*
 * These are the ABI functions exactly as the host provides them. All params
 * and results are i32; lengths and handles written to guest memory are u32
 * little-endian. Prefer the helpers further below.
 */

#define ESSA_HOST_IMPORT(name) \
    __attribute__((import_module("host"), import_name(#name)))

/** Copy the current call's argument bytes into buf; BufferTooSmall if buf_len is too small. */
ESSA_HOST_IMPORT(essa_get_args)
int32_t essa_host_get_args(uint8_t *buf_ptr, uint32_t buf_len);

/** Set the current call's result bytes (once per call). */
ESSA_HOST_IMPORT(essa_set_result)
int32_t essa_host_set_result(const uint8_t *ptr, uint32_t len);

/** Start a remote call of export `name` of this module; writes a u32 handle. */
ESSA_HOST_IMPORT(essa_call)
int32_t essa_host_call(const uint8_t *name_ptr, uint32_t name_len,
                       const uint8_t *args_ptr, uint32_t args_len,
                       uint32_t *handle_ptr);

/** Wait for the result of `handle` and write its length. */
ESSA_HOST_IMPORT(essa_get_result_len)
int32_t essa_host_get_result_len(uint32_t handle, uint32_t *len_ptr);

/** Wait for the result of `handle`; write it and its length, then forget the handle. */
ESSA_HOST_IMPORT(essa_get_result)
int32_t essa_host_get_result(uint32_t handle, uint8_t *val_ptr, uint32_t capacity,
                             uint32_t *len_ptr);

/** Merge a bincode-encoded LatticeValue into the value stored under key. */
ESSA_HOST_IMPORT(essa_put_lattice)
int32_t essa_host_put_lattice(const uint8_t *key_ptr, uint32_t key_len,
                              const uint8_t *val_ptr, uint32_t val_len);

/** Write the length of the encoded value stored under key; NotFound if absent. */
ESSA_HOST_IMPORT(essa_get_lattice_len)
int32_t essa_host_get_lattice_len(const uint8_t *key_ptr, uint32_t key_len,
                                  uint32_t *len_ptr);

/** Write the encoded value stored under key and its length. */
ESSA_HOST_IMPORT(essa_get_lattice_data)
int32_t essa_host_get_lattice_data(const uint8_t *key_ptr, uint32_t key_len,
                                   uint8_t *val_ptr, uint32_t capacity,
                                   uint32_t *len_ptr);

/* ------------------------------------------------------------------------ */
/* Defining callable functions                                               */
/* ------------------------------------------------------------------------ */

/** Prefix of the export name of every callable function (essa-rs convention). */
#define ESSA_WRAPPER_PREFIX "__essa_wrapper__"

/**
 * Define a remotely callable function `name`, exported as
 * "__essa_wrapper__<name>" with the Wasm type (i32) -> (). Write the body
 * right after the macro; inside it, `uint32_t args_len` is the byte length of
 * the call's arguments (fetch them with essa_get_args):
 *
 *     ESSA_FUNCTION(foo) {
 *         uint8_t *args;
 *         int32_t rc = essa_get_args(args_len, &args);
 *         ...
 *         essa_set_result(data, len);
 *     }
 *
 * A function that returns without calling essa_set_result gives its caller
 * NoResult. Each call runs in a fresh instance of the module, so globals do
 * not carry over between calls.
 */
#define ESSA_FUNCTION(name)                                                  \
    static void essa_function_body_##name(uint32_t args_len);                \
    __attribute__((export_name(ESSA_WRAPPER_PREFIX #name))) void             \
    essa_function_export_##name(uint32_t args_len) {                         \
        essa_function_body_##name(args_len);                                 \
    }                                                                        \
    static void essa_function_body_##name(uint32_t args_len)

/* ------------------------------------------------------------------------ */
/* Signatures                                                                */
/* ------------------------------------------------------------------------ */

/**
 * Declare the signature of a function defined with ESSA_FUNCTION: its result
 * type, then the name and type of each parameter, in order (at most 16):
 *
 *     ESSA_SIGNATURE(count_words, "u64", text, "string");
 *     ESSA_SIGNATURE(vocabulary, "list<string>");
 *     ESSA_SIGNATURE(scale, "list<f64>", values, "list<f64>", factor, "f64");
 *
 * Types are string literals of essa's type grammar (docs/signatures.md):
 * string, bytes, bool, unit, u8..u128, i8..i128, f32, f64, option<T>,
 * list<T>, tuple<T1,T2,...>, map<K,V>; each is the bincode the function reads
 * (its parameters one after the other) or writes (its result), as Rust's
 * #[essa_wrap] encodes the same types. With a signature, `essa call`, the
 * Python API and HTTP take the arguments as values (JSON, text) and give the
 * result as one; the function itself still reads and writes bincode (the
 * reader and writer below). A function without one takes and gives bytes.
 *
 * Write it at file scope. It adds one JSON line to the module's custom
 * section "essa.signatures", e.g.
 * {"name":"count_words","params":[{"name":"text","type":"string"}],"result":"u64"}
 * (clang cannot place a C variable in a custom section: a section attribute
 * makes a data segment, so the line is assembly). Nothing of it is in memory.
 */
#define ESSA_SIGNATURE(...)                                                   \
    __asm__(".section .custom_section.essa.signatures,\"\",@\n"               \
            ".ascii \"{\\\"name\\\":\\\"" ESSA__NAME(__VA_ARGS__)             \
            "\\\",\\\"params\\\":[" ESSA__PARAMS(__VA_ARGS__)                 \
            "],\\\"result\\\":\\\"" ESSA__RESULT(__VA_ARGS__, ~) "\\\"}\\n\"\n" \
            ".text\n")

/* The pieces of ESSA_SIGNATURE (not for direct use). */
#define ESSA__STR(x) #x
#define ESSA__NAME(f, ...) ESSA__STR(f)
#define ESSA__RESULT(f, r, ...) "" r ""
#define ESSA__PARAM(n, t) "{\\\"name\\\":\\\"" ESSA__STR(n) "\\\",\\\"type\\\":\\\"" t "\\\"}"
#define ESSA__CAT(a, b) a##b
#define ESSA__PICK(_1, _2, _3, _4, _5, _6, _7, _8, _9, _10, _11, _12, _13, _14, _15, _16, _17, _18, _19, _20, _21, _22, _23, _24, _25, _26, _27, _28, _29, _30, _31, _32, _33, _34, n, ...) n
/* The number of (name, type) pairs after the function and result; ESSA__ODD for a name without a type. */
#define ESSA__NPARAMS(...) ESSA__PICK(__VA_ARGS__, 16, ESSA__ODD, 15, ESSA__ODD, 14, ESSA__ODD, 13, ESSA__ODD, 12, ESSA__ODD, 11, ESSA__ODD, 10, ESSA__ODD, 9, ESSA__ODD, 8, ESSA__ODD, 7, ESSA__ODD, 6, ESSA__ODD, 5, ESSA__ODD, 4, ESSA__ODD, 3, ESSA__ODD, 2, ESSA__ODD, 1, ESSA__ODD, 0, ESSA__ODD)
#define ESSA__PARAMS_N(n, ...) ESSA__CAT(ESSA__PARAMS_, n)(__VA_ARGS__)
#define ESSA__PARAMS(...) ESSA__PARAMS_N(ESSA__NPARAMS(__VA_ARGS__), __VA_ARGS__)
#define ESSA__PARAMS_0(f, r)
#define ESSA__PARAMS_1(f, r, n, t) ESSA__PARAM(n, t)
#define ESSA__PARAMS_2(f, r, n, t, ...) ESSA__PARAM(n, t) "," ESSA__PARAMS_1(f, r, __VA_ARGS__)
#define ESSA__PARAMS_3(f, r, n, t, ...) ESSA__PARAM(n, t) "," ESSA__PARAMS_2(f, r, __VA_ARGS__)
#define ESSA__PARAMS_4(f, r, n, t, ...) ESSA__PARAM(n, t) "," ESSA__PARAMS_3(f, r, __VA_ARGS__)
#define ESSA__PARAMS_5(f, r, n, t, ...) ESSA__PARAM(n, t) "," ESSA__PARAMS_4(f, r, __VA_ARGS__)
#define ESSA__PARAMS_6(f, r, n, t, ...) ESSA__PARAM(n, t) "," ESSA__PARAMS_5(f, r, __VA_ARGS__)
#define ESSA__PARAMS_7(f, r, n, t, ...) ESSA__PARAM(n, t) "," ESSA__PARAMS_6(f, r, __VA_ARGS__)
#define ESSA__PARAMS_8(f, r, n, t, ...) ESSA__PARAM(n, t) "," ESSA__PARAMS_7(f, r, __VA_ARGS__)
#define ESSA__PARAMS_9(f, r, n, t, ...) ESSA__PARAM(n, t) "," ESSA__PARAMS_8(f, r, __VA_ARGS__)
#define ESSA__PARAMS_10(f, r, n, t, ...) ESSA__PARAM(n, t) "," ESSA__PARAMS_9(f, r, __VA_ARGS__)
#define ESSA__PARAMS_11(f, r, n, t, ...) ESSA__PARAM(n, t) "," ESSA__PARAMS_10(f, r, __VA_ARGS__)
#define ESSA__PARAMS_12(f, r, n, t, ...) ESSA__PARAM(n, t) "," ESSA__PARAMS_11(f, r, __VA_ARGS__)
#define ESSA__PARAMS_13(f, r, n, t, ...) ESSA__PARAM(n, t) "," ESSA__PARAMS_12(f, r, __VA_ARGS__)
#define ESSA__PARAMS_14(f, r, n, t, ...) ESSA__PARAM(n, t) "," ESSA__PARAMS_13(f, r, __VA_ARGS__)
#define ESSA__PARAMS_15(f, r, n, t, ...) ESSA__PARAM(n, t) "," ESSA__PARAMS_14(f, r, __VA_ARGS__)
#define ESSA__PARAMS_16(f, r, n, t, ...) ESSA__PARAM(n, t) "," ESSA__PARAMS_15(f, r, __VA_ARGS__)

/* ------------------------------------------------------------------------ */
/* Arguments and results of the current call                                 */
/* ------------------------------------------------------------------------ */

/**
 * Fetch the current call's arguments (args_len bytes, the parameter of an
 * ESSA_FUNCTION) into a new malloc'd buffer stored in *buf_out (free() it;
 * it is non-NULL even when args_len is 0). UnknownError if out of memory.
 */
static inline int32_t essa_get_args(uint32_t args_len, uint8_t **buf_out) {
    uint8_t *buf = (uint8_t *)malloc(args_len ? args_len : 1);
    if (!buf) return ESSA_UNKNOWN_ERROR;
    int32_t rc = essa_host_get_args(buf, args_len);
    if (rc != ESSA_OK) {
        free(buf);
        return rc;
    }
    *buf_out = buf;
    return ESSA_OK;
}

/** Set the result bytes of the current call (call it at most once per call). */
static inline int32_t essa_set_result(const void *data, size_t len) {
    if (len > UINT32_MAX) return ESSA_UNKNOWN_ERROR;
    return essa_host_set_result((const uint8_t *)data, (uint32_t)len);
}

/* ------------------------------------------------------------------------ */
/* Remote calls                                                              */
/* ------------------------------------------------------------------------ */

/**
 * Start a remote call of the export `export_name` (full name, e.g.
 * "__essa_wrapper__foo") of this module with the given argument bytes, and
 * store its handle in *handle_out. Returns at once; NoSuchFunction or
 * InvalidFunctionSignature if the module has no such callable export.
 */
static inline int32_t essa_call_start_export(const char *export_name, const void *args,
                                             size_t args_len, uint32_t *handle_out) {
    size_t name_len = strlen(export_name);
    if (name_len > UINT32_MAX || args_len > UINT32_MAX) return ESSA_UNKNOWN_ERROR;
    uint32_t handle = 0;
    int32_t rc = essa_host_call((const uint8_t *)export_name, (uint32_t)name_len,
                                (const uint8_t *)args, (uint32_t)args_len, &handle);
    if (rc == ESSA_OK) *handle_out = handle;
    return rc;
}

/**
 * Start a remote call of the function defined with ESSA_FUNCTION(function)
 * (or the Rust SDK's #[essa_wrap] fn function), i.e. of the export
 * "__essa_wrapper__<function>", and store its handle in *handle_out.
 * Wait for the result with essa_call_wait.
 */
static inline int32_t essa_call_start(const char *function, const void *args,
                                      size_t args_len, uint32_t *handle_out) {
    size_t prefix_len = sizeof(ESSA_WRAPPER_PREFIX) - 1;
    size_t fn_len = strlen(function);
    char *name = (char *)malloc(prefix_len + fn_len + 1);
    if (!name) return ESSA_UNKNOWN_ERROR;
    memcpy(name, ESSA_WRAPPER_PREFIX, prefix_len);
    memcpy(name + prefix_len, function, fn_len + 1);
    int32_t rc = essa_call_start_export(name, args, args_len, handle_out);
    free(name);
    return rc;
}

/**
 * Wait for the result of a call started with essa_call_start and store it in
 * a new malloc'd buffer: *buf_out (non-NULL even for an empty result; free()
 * it) and *len_out. Consumes the handle. NoResult if the function returned
 * without setting a result.
 */
static inline int32_t essa_call_wait(uint32_t handle, uint8_t **buf_out, size_t *len_out) {
    uint32_t len = 0;
    int32_t rc = essa_host_get_result_len(handle, &len);
    if (rc != ESSA_OK) return rc;
    uint8_t *buf = (uint8_t *)malloc(len ? len : 1);
    if (!buf) return ESSA_UNKNOWN_ERROR;
    uint32_t written = 0;
    rc = essa_host_get_result(handle, buf, len, &written);
    if (rc != ESSA_OK) {
        free(buf);
        return rc;
    }
    if (written > len) {
        free(buf);
        return ESSA_INVALID_RESULT;
    }
    *buf_out = buf;
    *len_out = written;
    return ESSA_OK;
}

/* ------------------------------------------------------------------------ */
/* bincode 1.x writer                                                        */
/* ------------------------------------------------------------------------ */
/*
 * Encodes values the way serde + bincode 1.x (bincode::serialize) does:
 * integers fixed-width little-endian, byte strings and strings as a u64
 * length then the bytes, enum variants as a u32 index then the payload,
 * structs (and a function's argument list) as their fields in order.
 *
 *     essa_writer w;
 *     essa_writer_init(&w);
 *     essa_write_str(&w, "hello");        // String
 *     essa_write_u64(&w, 15000);          // usize
 *     if (w.failed) ...                   // out of memory
 *     ... use w.data, w.len ...
 *     essa_writer_free(&w);
 *
 * Errors are sticky: after a failed write, `failed` is set and further
 * writes do nothing, so a sequence of writes needs one check at the end.
 */

/** A growable output buffer for bincode encoding. */
typedef struct essa_writer {
    uint8_t *data; /**< encoded bytes (malloc'd; may be NULL while len is 0) */
    size_t len;    /**< number of bytes written */
    size_t cap;    /**< allocated capacity */
    int failed;    /**< non-zero once a write ran out of memory */
} essa_writer;

/** Initialize an empty writer. */
static inline void essa_writer_init(essa_writer *w) {
    w->data = NULL;
    w->len = 0;
    w->cap = 0;
    w->failed = 0;
}

/** Free a writer's buffer and reset it to empty. */
static inline void essa_writer_free(essa_writer *w) {
    free(w->data);
    essa_writer_init(w);
}

/** Append raw bytes (no length prefix). UnknownError if out of memory. */
static inline int32_t essa_write_raw(essa_writer *w, const void *data, size_t len) {
    if (w->failed) return ESSA_UNKNOWN_ERROR;
    if (len > SIZE_MAX - w->len) {
        w->failed = 1;
        return ESSA_UNKNOWN_ERROR;
    }
    if (w->len + len > w->cap) {
        size_t cap = w->cap ? w->cap : 64;
        while (cap < w->len + len) {
            if (cap > SIZE_MAX / 2) {
                cap = w->len + len;
                break;
            }
            cap *= 2;
        }
        uint8_t *grown = (uint8_t *)realloc(w->data, cap);
        if (!grown) {
            w->failed = 1;
            return ESSA_UNKNOWN_ERROR;
        }
        w->data = grown;
        w->cap = cap;
    }
    if (len) memcpy(w->data + w->len, data, len);
    w->len += len;
    return ESSA_OK;
}

/** Append a u32, little-endian (also: enum variant indices). */
static inline int32_t essa_write_u32(essa_writer *w, uint32_t v) {
    uint8_t b[4];
    for (int i = 0; i < 4; i++) b[i] = (uint8_t)(v >> (8 * i));
    return essa_write_raw(w, b, 4);
}

/** Append a u64, little-endian (also: usize, lengths). */
static inline int32_t essa_write_u64(essa_writer *w, uint64_t v) {
    uint8_t b[8];
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(v >> (8 * i));
    return essa_write_raw(w, b, 8);
}

/** Append a byte string (Vec<u8>): u64 length, then the bytes. */
static inline int32_t essa_write_bytes(essa_writer *w, const void *data, size_t len) {
    int32_t rc = essa_write_u64(w, (uint64_t)len);
    if (rc != ESSA_OK) return rc;
    return essa_write_raw(w, data, len);
}

/** Append a NUL-terminated UTF-8 string (String): u64 length, then the bytes. */
static inline int32_t essa_write_str(essa_writer *w, const char *s) {
    return essa_write_bytes(w, s, strlen(s));
}

/* ------------------------------------------------------------------------ */
/* bincode 1.x reader                                                        */
/* ------------------------------------------------------------------------ */
/*
 * Decodes bincode 1.x values from a byte buffer (which the reader does not
 * own). Every read returns ESSA_OK, or ESSA_INVALID_RESULT when the input is
 * truncated or malformed; errors are sticky (`failed`).
 *
 *     essa_reader r;
 *     essa_reader_init(&r, args, args_len);
 *     char *s; uint64_t count;
 *     if (essa_read_string(&r, &s, NULL) != ESSA_OK ||
 *         essa_read_u64(&r, &count) != ESSA_OK) ...
 */

/** A cursor over bincode-encoded bytes. */
typedef struct essa_reader {
    const uint8_t *data; /**< input (borrowed) */
    size_t len;          /**< input length */
    size_t pos;          /**< bytes consumed so far */
    int failed;          /**< non-zero once a read failed */
} essa_reader;

/** Start reading `len` bytes at `data` (the buffer must outlive the reader). */
static inline void essa_reader_init(essa_reader *r, const void *data, size_t len) {
    r->data = (const uint8_t *)data;
    r->len = len;
    r->pos = 0;
    r->failed = 0;
}

/** Number of bytes not read yet. */
static inline size_t essa_reader_remaining(const essa_reader *r) {
    return r->len - r->pos;
}

/** Borrow the next `len` raw bytes: *ptr_out points into the input. */
static inline int32_t essa_read_raw(essa_reader *r, size_t len, const uint8_t **ptr_out) {
    if (r->failed || len > r->len - r->pos) {
        r->failed = 1;
        return ESSA_INVALID_RESULT;
    }
    *ptr_out = r->data + r->pos;
    r->pos += len;
    return ESSA_OK;
}

/** Read a little-endian u32 (also: enum variant indices). */
static inline int32_t essa_read_u32(essa_reader *r, uint32_t *out) {
    const uint8_t *p;
    int32_t rc = essa_read_raw(r, 4, &p);
    if (rc != ESSA_OK) return rc;
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v |= (uint32_t)p[i] << (8 * i);
    *out = v;
    return ESSA_OK;
}

/** Read a little-endian u64 (also: usize, lengths). */
static inline int32_t essa_read_u64(essa_reader *r, uint64_t *out) {
    const uint8_t *p;
    int32_t rc = essa_read_raw(r, 8, &p);
    if (rc != ESSA_OK) return rc;
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    *out = v;
    return ESSA_OK;
}

/**
 * Read a byte string (u64 length + bytes) without copying: *ptr_out points
 * into the input, *len_out is its length.
 */
static inline int32_t essa_read_bytes(essa_reader *r, const uint8_t **ptr_out, size_t *len_out) {
    uint64_t len;
    int32_t rc = essa_read_u64(r, &len);
    if (rc != ESSA_OK) return rc;
    if (len > (uint64_t)(r->len - r->pos)) {
        r->failed = 1;
        return ESSA_INVALID_RESULT;
    }
    rc = essa_read_raw(r, (size_t)len, ptr_out);
    if (rc != ESSA_OK) return rc;
    *len_out = (size_t)len;
    return ESSA_OK;
}

/** Non-zero if the `len` bytes at `s` are valid UTF-8 (what Rust's String requires). */
static inline int essa_utf8_valid(const uint8_t *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        size_t n;
        uint32_t cp;
        if (c < 0x80) { i++; continue; }
        else if ((c & 0xE0) == 0xC0) { n = 1; cp = c & 0x1F; }
        else if ((c & 0xF0) == 0xE0) { n = 2; cp = c & 0x0F; }
        else if ((c & 0xF8) == 0xF0) { n = 3; cp = c & 0x07; }
        else return 0;
        if (n > len - i - 1) return 0;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
            cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += n + 1;
    }
    return 1;
}

/**
 * Read a String (u64 length + UTF-8) into a new malloc'd, NUL-terminated copy
 * *str_out (free() it); *len_out (may be NULL) gets its byte length.
 * InvalidResult if truncated or not valid UTF-8.
 */
static inline int32_t essa_read_string(essa_reader *r, char **str_out, size_t *len_out) {
    const uint8_t *p;
    size_t len;
    int32_t rc = essa_read_bytes(r, &p, &len);
    if (rc != ESSA_OK) return rc;
    if (!essa_utf8_valid(p, len)) {
        r->failed = 1;
        return ESSA_INVALID_RESULT;
    }
    char *s = (char *)malloc(len + 1);
    if (!s) return ESSA_UNKNOWN_ERROR;
    if (len) memcpy(s, p, len);
    s[len] = '\0';
    *str_out = s;
    if (len_out) *len_out = len;
    return ESSA_OK;
}

/* ------------------------------------------------------------------------ */
/* Key-value store (lattice values)                                          */
/* ------------------------------------------------------------------------ */
/*
 * Values are bincode-encoded `LatticeValue`s (docs/lattice-encoding.md); a put
 * merges into the stored value (Set: union; Lww: larger timestamp wins).
 * Keys are NUL-terminated UTF-8 strings, relative to the module's namespace.
 */

/** LatticeValue variant tags (u32 enum index). */
enum {
    ESSA_LATTICE_LWW = 0,
    ESSA_LATTICE_SET = 1,
    ESSA_LATTICE_ORDERED_SET = 2,
    ESSA_LATTICE_SINGLE_CAUSAL = 3,
    ESSA_LATTICE_MULTI_CAUSAL = 4,
};

/** A byte string: `len` bytes at `data`. */
typedef struct essa_bytes {
    uint8_t *data;
    size_t len;
} essa_bytes;

/** Merge an already bincode-encoded LatticeValue into the value under key. */
static inline int32_t essa_kvs_put_encoded(const char *key, const void *value, size_t len) {
    size_t key_len = strlen(key);
    if (key_len > UINT32_MAX || len > UINT32_MAX) return ESSA_UNKNOWN_ERROR;
    return essa_host_put_lattice((const uint8_t *)key, (uint32_t)key_len,
                                 (const uint8_t *)value, (uint32_t)len);
}

/**
 * Merge the Set of `count` byte strings `members` into the value under key
 * (set union; duplicates are harmless).
 */
static inline int32_t essa_kvs_put_set(const char *key, const essa_bytes *members, size_t count) {
    essa_writer w;
    essa_writer_init(&w);
    essa_write_u32(&w, ESSA_LATTICE_SET);
    essa_write_u64(&w, (uint64_t)count);
    for (size_t i = 0; i < count; i++) essa_write_bytes(&w, members[i].data, members[i].len);
    int32_t rc = w.failed ? ESSA_UNKNOWN_ERROR : essa_kvs_put_encoded(key, w.data, w.len);
    essa_writer_free(&w);
    return rc;
}

/** Like essa_kvs_put_set, with `count` NUL-terminated strings as members. */
static inline int32_t essa_kvs_put_set_strs(const char *key, const char *const *members,
                                            size_t count) {
    essa_writer w;
    essa_writer_init(&w);
    essa_write_u32(&w, ESSA_LATTICE_SET);
    essa_write_u64(&w, (uint64_t)count);
    for (size_t i = 0; i < count; i++) essa_write_str(&w, members[i]);
    int32_t rc = w.failed ? ESSA_UNKNOWN_ERROR : essa_kvs_put_encoded(key, w.data, w.len);
    essa_writer_free(&w);
    return rc;
}

/** Size of a buffer that holds any essa_format_rfc3339 output, NUL included. */
#define ESSA_RFC3339_MAX 40

/**
 * Format a UTC time (seconds since the Unix epoch + nanoseconds) as RFC 3339
 * exactly as chrono does for DateTime<Utc> (the LWW timestamp encoding):
 * "YYYY-MM-DDTHH:MM:SS" + fraction + "Z", where the fraction is empty when
 * nsec is 0, ".mmm" for whole milliseconds, ".uuuuuu" for whole microseconds,
 * else ".nnnnnnnnn". `out` must hold ESSA_RFC3339_MAX bytes. Returns the
 * length written (without the NUL).
 */
static inline size_t essa_format_rfc3339(int64_t sec, uint32_t nsec, char *out) {
    int64_t days = sec / 86400, rem = sec % 86400;
    if (rem < 0) {
        rem += 86400;
        days -= 1;
    }
    /* civil_from_days (H. Hinnant) */
    int64_t z = days + 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t y = yoe + era * 400;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int64_t d = doy - (153 * mp + 2) / 5 + 1;
    int64_t m = mp < 10 ? mp + 3 : mp - 9;
    if (m <= 2) y += 1;

    char *p = out;
    int64_t ay = y < 0 ? -y : y;
    if (y < 0) *p++ = '-';
    else if (y > 9999) *p++ = '+';
    char digits[20];
    int nd = 0;
    do {
        digits[nd++] = (char)('0' + ay % 10);
        ay /= 10;
    } while (ay);
    while (nd < 4) digits[nd++] = '0';
    while (nd) *p++ = digits[--nd];
#define ESSA_PUT2_(v) do { *p++ = (char)('0' + (v) / 10); *p++ = (char)('0' + (v) % 10); } while (0)
    *p++ = '-';
    ESSA_PUT2_(m);
    *p++ = '-';
    ESSA_PUT2_(d);
    *p++ = 'T';
    ESSA_PUT2_(rem / 3600);
    *p++ = ':';
    ESSA_PUT2_(rem / 60 % 60);
    *p++ = ':';
    ESSA_PUT2_(rem % 60);
#undef ESSA_PUT2_
    if (nsec != 0) {
        uint32_t frac;
        int width;
        if (nsec % 1000000 == 0) { frac = nsec / 1000000; width = 3; }
        else if (nsec % 1000 == 0) { frac = nsec / 1000; width = 6; }
        else { frac = nsec; width = 9; }
        *p++ = '.';
        for (int i = width - 1; i >= 0; i--) {
            p[i] = (char)('0' + frac % 10);
            frac /= 10;
        }
        p += width;
    }
    *p++ = 'Z';
    *p = '\0';
    return (size_t)(p - out);
}

/**
 * The current UTC time as RFC 3339 text in chrono's format (see
 * essa_format_rfc3339), from the WASI realtime clock (what wasi-libc's
 * clock_gettime(CLOCK_REALTIME) reads; called directly so the header also
 * works with -std=c11). `out` must hold ESSA_RFC3339_MAX bytes. Returns the
 * length, or 0 if the clock is unavailable.
 */
static inline size_t essa_rfc3339_now(char *out) {
#ifdef __wasi__
    __wasi_timestamp_t ns = 0;
    if (__wasi_clock_time_get(__WASI_CLOCKID_REALTIME, 1, &ns) != 0) return 0;
    return essa_format_rfc3339((int64_t)(ns / 1000000000u), (uint32_t)(ns % 1000000000u), out);
#else
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0) return 0;
    return essa_format_rfc3339((int64_t)ts.tv_sec, (uint32_t)ts.tv_nsec, out);
#endif
}

/**
 * Merge an Lww (last-writer-wins) value into the value under key, timestamped
 * with the current time (essa_rfc3339_now). The value with the larger
 * timestamp wins. UnknownError if the clock is unavailable.
 */
static inline int32_t essa_kvs_put_lww(const char *key, const void *value, size_t len) {
    char stamp[ESSA_RFC3339_MAX];
    size_t stamp_len = essa_rfc3339_now(stamp);
    if (stamp_len == 0) return ESSA_UNKNOWN_ERROR;
    essa_writer w;
    essa_writer_init(&w);
    essa_write_u32(&w, ESSA_LATTICE_LWW);
    essa_write_bytes(&w, stamp, stamp_len);
    essa_write_bytes(&w, value, len);
    int32_t rc = w.failed ? ESSA_UNKNOWN_ERROR : essa_kvs_put_encoded(key, w.data, w.len);
    essa_writer_free(&w);
    return rc;
}

/**
 * Read the raw bincode-encoded LatticeValue stored under key into a new
 * malloc'd buffer *buf_out (free() it) of *len_out bytes. NotFound if the key
 * has no value.
 */
static inline int32_t essa_kvs_get(const char *key, uint8_t **buf_out, size_t *len_out) {
    size_t key_len = strlen(key);
    if (key_len > UINT32_MAX) return ESSA_UNKNOWN_ERROR;
    /* The value can grow between the two calls (concurrent merges): retry. */
    for (int attempt = 0; attempt < 8; attempt++) {
        uint32_t len = 0;
        int32_t rc = essa_host_get_lattice_len((const uint8_t *)key, (uint32_t)key_len, &len);
        if (rc != ESSA_OK) return rc;
        uint8_t *buf = (uint8_t *)malloc(len ? len : 1);
        if (!buf) return ESSA_UNKNOWN_ERROR;
        uint32_t written = 0;
        rc = essa_host_get_lattice_data((const uint8_t *)key, (uint32_t)key_len, buf, len,
                                        &written);
        if (rc == ESSA_OK && written <= len) {
            *buf_out = buf;
            *len_out = written;
            return ESSA_OK;
        }
        free(buf);
        if (rc == ESSA_OK) return ESSA_INVALID_RESULT;
        if (rc != ESSA_BUFFER_TOO_SMALL) return rc;
    }
    return ESSA_BUFFER_TOO_SMALL;
}

/** Free an array of byte strings returned by essa_decode_set / essa_kvs_get_set. */
static inline void essa_set_free(essa_bytes *members, size_t count) {
    if (!members) return;
    for (size_t i = 0; i < count; i++) free(members[i].data);
    free(members);
}

/**
 * Decode an encoded LatticeValue that must be a Set (tag 1) into a new
 * malloc'd array *members_out of *count_out byte strings, each its own
 * malloc'd copy (free all with essa_set_free). The order is the stored
 * order (unspecified). InvalidResult if the bytes are not a well-formed Set.
 */
static inline int32_t essa_decode_set(const uint8_t *data, size_t len, essa_bytes **members_out,
                                      size_t *count_out) {
    essa_reader r;
    essa_reader_init(&r, data, len);
    uint32_t tag;
    uint64_t count;
    if (essa_read_u32(&r, &tag) != ESSA_OK || tag != ESSA_LATTICE_SET) return ESSA_INVALID_RESULT;
    if (essa_read_u64(&r, &count) != ESSA_OK) return ESSA_INVALID_RESULT;
    /* each member needs at least its 8-byte length prefix */
    if (count > essa_reader_remaining(&r) / 8) return ESSA_INVALID_RESULT;
    essa_bytes *members = (essa_bytes *)calloc(count ? (size_t)count : 1, sizeof(essa_bytes));
    if (!members) return ESSA_UNKNOWN_ERROR;
    for (size_t i = 0; i < (size_t)count; i++) {
        const uint8_t *p;
        size_t n;
        if (essa_read_bytes(&r, &p, &n) != ESSA_OK) {
            essa_set_free(members, i);
            return ESSA_INVALID_RESULT;
        }
        members[i].data = (uint8_t *)malloc(n ? n : 1);
        if (!members[i].data) {
            essa_set_free(members, i);
            return ESSA_UNKNOWN_ERROR;
        }
        if (n) memcpy(members[i].data, p, n);
        members[i].len = n;
    }
    *members_out = members;
    *count_out = (size_t)count;
    return ESSA_OK;
}

/**
 * Read the Set stored under key: essa_kvs_get + essa_decode_set. NotFound if
 * absent, InvalidResult if the stored value is not a Set.
 */
static inline int32_t essa_kvs_get_set(const char *key, essa_bytes **members_out,
                                       size_t *count_out) {
    uint8_t *buf;
    size_t len;
    int32_t rc = essa_kvs_get(key, &buf, &len);
    if (rc != ESSA_OK) return rc;
    rc = essa_decode_set(buf, len, members_out, count_out);
    free(buf);
    return rc;
}

#ifdef __cplusplus
}
#endif

#endif /* ESSA_H */
