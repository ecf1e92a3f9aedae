/*
 * word-count: counts words, one remote call per line, and keeps the
 * vocabulary it has seen in the key-value store.
 *
 * Functions (callable remotely; arguments and results are bincode, as Rust's
 * #[essa_wrap] encodes them, so a Rust build of the same functions is
 * interchangeable with this one):
 *
 *   count_words(text: String) -> u64
 *       the number of words in `text` (a word is a maximal run of ASCII
 *       letters, digits and apostrophes, lower-cased); merges every distinct
 *       word into the Set under the state key "vocab".
 *   count_lines(text: String) -> u64
 *       starts one remote call of count_words per non-empty line (all of
 *       them before waiting for any) and returns the sum.
 *   vocabulary() -> Vec<String>
 *       the "vocab" set, sorted by byte value (empty if nothing was counted).
 *
 * main (the module's _start) runs count_lines remotely on a short text, then
 * vocabulary, and prints "words: N" and "vocabulary: M words".
 *
 * Each function declares its signature (ESSA_SIGNATURE), so essa takes its
 * arguments and gives its result as values: `essa call wc count_words "the
 * quick fox"` prints 3. A function given arguments that do not decode (raw
 * bytes sent anyway) prints why on stderr and traps (its caller gets
 * UnknownError), as a Rust #[essa_wrap] function panics.
 * Build: python examples/build.py
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "essa.h"

#define VOCAB_KEY "vocab"

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */
/* ------------------------------------------------------------------------ */

/* Print a message on stderr and trap: the caller of this call gets UnknownError. */
static void fail(const char *function, const char *what, int32_t rc) {
    fprintf(stderr, "%s: %s: %s\n", function, what, essa_result_name(rc));
    abort();
}

/* The call's single String argument: a malloc'd copy (not NUL-terminated) and its length. */
static char *string_argument(const char *function, uint32_t args_len, size_t *len_out) {
    uint8_t *args;
    essa_reader r;
    const uint8_t *text;
    size_t len;
    int32_t rc = essa_get_args(args_len, &args);
    if (rc != ESSA_OK) fail(function, "essa_get_args failed", rc);
    essa_reader_init(&r, args, args_len);
    rc = essa_read_bytes(&r, &text, &len);
    if (rc != ESSA_OK || !essa_utf8_valid(text, len))
        fail(function, "the argument is not a bincode String", ESSA_INVALID_RESULT);
    char *copy = (char *)malloc(len ? len : 1);
    if (!copy) fail(function, "out of memory", ESSA_UNKNOWN_ERROR);
    if (len) memcpy(copy, text, len);
    free(args);
    *len_out = len;
    return copy;
}

/* Set the call's result to a bincode u64. */
static void set_u64_result(const char *function, uint64_t value) {
    uint8_t bytes[8];
    for (int i = 0; i < 8; i++) bytes[i] = (uint8_t)(value >> (8 * i));
    int32_t rc = essa_set_result(bytes, sizeof bytes);
    if (rc != ESSA_OK) fail(function, "essa_set_result failed", rc);
}

/* Decode a result that must be exactly one bincode u64. */
static int32_t decode_u64(const uint8_t *buf, size_t len, uint64_t *out) {
    essa_reader r;
    essa_reader_init(&r, buf, len);
    int32_t rc = essa_read_u64(&r, out);
    if (rc == ESSA_OK && essa_reader_remaining(&r) != 0) rc = ESSA_INVALID_RESULT;
    return rc;
}

static int is_word_byte(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '\'';
}

/* Bytewise order for byte strings (a prefix comes first). */
static int compare_bytes(const void *a, const void *b) {
    const essa_bytes *x = (const essa_bytes *)a, *y = (const essa_bytes *)b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = n ? memcmp(x->data, y->data, n) : 0;
    if (c != 0) return c;
    return (x->len > y->len) - (x->len < y->len);
}

/* Start a remote call of `function` with `args`; trap (naming `caller`) if it cannot start. */
static uint32_t start_call(const char *caller, const char *function, const void *args, size_t len) {
    uint32_t handle;
    int32_t rc = essa_call_start(function, args, len, &handle);
    if (rc != ESSA_OK) fail(caller, "starting a remote call failed", rc);
    return handle;
}

/* ------------------------------------------------------------------------ */
/* Remotely callable functions                                               */
/* ------------------------------------------------------------------------ */

/* count_words(text: String) -> u64 */
ESSA_SIGNATURE(count_words, "u64", text, "string");
ESSA_FUNCTION(count_words) {
    size_t len;
    char *text = string_argument("count_words", args_len, &len);
    for (size_t i = 0; i < len; i++)
        if (text[i] >= 'A' && text[i] <= 'Z') text[i] = (char)(text[i] - 'A' + 'a');

    /* Every word, as a span of the lower-cased text; at most one per two bytes, plus one. */
    essa_bytes *words = (essa_bytes *)malloc((len / 2 + 1) * sizeof(essa_bytes));
    if (!words) fail("count_words", "out of memory", ESSA_UNKNOWN_ERROR);
    size_t count = 0;
    for (size_t i = 0; i < len;) {
        if (!is_word_byte(text[i])) {
            i++;
            continue;
        }
        size_t start = i;
        while (i < len && is_word_byte(text[i])) i++;
        words[count].data = (uint8_t *)text + start;
        words[count].len = i - start;
        count++;
    }

    if (count > 0) {
        /* Merge the distinct words into the vocabulary (a Set: union with what is there). */
        qsort(words, count, sizeof(essa_bytes), compare_bytes);
        size_t distinct = 1;
        for (size_t i = 1; i < count; i++)
            if (compare_bytes(&words[i], &words[distinct - 1]) != 0) words[distinct++] = words[i];
        int32_t rc = essa_kvs_put_set(VOCAB_KEY, words, distinct);
        if (rc != ESSA_OK) fail("count_words", "merging the words into \"" VOCAB_KEY "\" failed", rc);
    }
    free(words);
    free(text);
    set_u64_result("count_words", count);
}

/* count_lines(text: String) -> u64 */
ESSA_SIGNATURE(count_lines, "u64", text, "string");
ESSA_FUNCTION(count_lines) {
    size_t len;
    char *text = string_argument("count_lines", args_len, &len);

    size_t max_lines = 1;
    for (size_t i = 0; i < len; i++)
        if (text[i] == '\n') max_lines++;
    uint32_t *handles = (uint32_t *)malloc(max_lines * sizeof(uint32_t));
    if (!handles) fail("count_lines", "out of memory", ESSA_UNKNOWN_ERROR);

    /* Start one call per non-empty line (a trailing '\r' is not part of it)... */
    size_t calls = 0;
    for (size_t start = 0; start < len;) {
        size_t end = start;
        while (end < len && text[end] != '\n') end++;
        size_t line_len = end - start;
        if (line_len > 0 && text[end - 1] == '\r') line_len--;
        if (line_len > 0) {
            essa_writer w;
            essa_writer_init(&w);
            essa_write_bytes(&w, text + start, line_len);
            if (w.failed) fail("count_lines", "out of memory", ESSA_UNKNOWN_ERROR);
            handles[calls++] = start_call("count_lines", "count_words", w.data, w.len);
            essa_writer_free(&w);
        }
        start = end + 1;
    }

    /* ...then wait for all of them. */
    uint64_t total = 0;
    for (size_t i = 0; i < calls; i++) {
        uint8_t *result;
        size_t result_len;
        uint64_t words;
        int32_t rc = essa_call_wait(handles[i], &result, &result_len);
        if (rc != ESSA_OK) fail("count_lines", "a remote call of count_words failed", rc);
        rc = decode_u64(result, result_len, &words);
        if (rc != ESSA_OK) fail("count_lines", "count_words did not return a u64", rc);
        free(result);
        total += words;
    }
    free(handles);
    free(text);
    set_u64_result("count_lines", total);
}

/* vocabulary() -> Vec<String> */
ESSA_SIGNATURE(vocabulary, "list<string>");
ESSA_FUNCTION(vocabulary) {
    (void)args_len; /* no parameters: the argument bytes are empty */
    essa_bytes *members = NULL;
    size_t count = 0;
    int32_t rc = essa_kvs_get_set(VOCAB_KEY, &members, &count);
    if (rc == ESSA_NOT_FOUND) count = 0;
    else if (rc != ESSA_OK) fail("vocabulary", "reading the set under \"" VOCAB_KEY "\" failed", rc);
    if (count > 1) qsort(members, count, sizeof(essa_bytes), compare_bytes);

    essa_writer w;
    essa_writer_init(&w);
    essa_write_u64(&w, (uint64_t)count);
    for (size_t i = 0; i < count; i++) {
        if (!essa_utf8_valid(members[i].data, members[i].len))
            fail("vocabulary", "a word in \"" VOCAB_KEY "\" is not UTF-8", ESSA_INVALID_RESULT);
        essa_write_bytes(&w, members[i].data, members[i].len);
    }
    if (w.failed) fail("vocabulary", "out of memory", ESSA_UNKNOWN_ERROR);
    rc = essa_set_result(w.data, w.len);
    if (rc != ESSA_OK) fail("vocabulary", "essa_set_result failed", rc);
    essa_writer_free(&w);
    essa_set_free(members, count);
}

/* ------------------------------------------------------------------------ */
/* main                                                                      */
/* ------------------------------------------------------------------------ */

static const char TEXT[] =
    "The quick brown fox jumps over the lazy dog.\n"
    "The dog sleeps; the fox doesn't.\n"
    "\n"
    "It's 2 o'clock, and 2 foxes jump: \"Quick!\"\n";

/* Report a failed step of main and exit with status 1. */
static int main_failed(const char *what, int32_t rc) {
    fflush(stdout);
    fprintf(stderr, "word-count: %s failed: %s\n", what, essa_result_name(rc));
    return 1;
}

int main(void) {
    essa_writer args;
    uint8_t *result;
    size_t len;
    int32_t rc;

    /* count_lines(TEXT) */
    essa_writer_init(&args);
    essa_write_bytes(&args, TEXT, sizeof(TEXT) - 1);
    if (args.failed) return main_failed("encoding the text", ESSA_UNKNOWN_ERROR);
    uint32_t handle;
    rc = essa_call_start("count_lines", args.data, args.len, &handle);
    essa_writer_free(&args);
    if (rc == ESSA_OK) rc = essa_call_wait(handle, &result, &len);
    if (rc != ESSA_OK) return main_failed("count_lines", rc);
    uint64_t words;
    rc = decode_u64(result, len, &words);
    free(result);
    if (rc != ESSA_OK) return main_failed("decoding the result of count_lines", rc);
    printf("words: %llu\n", (unsigned long long)words);

    /* vocabulary() */
    rc = essa_call_start("vocabulary", "", 0, &handle);
    if (rc == ESSA_OK) rc = essa_call_wait(handle, &result, &len);
    if (rc != ESSA_OK) return main_failed("vocabulary", rc);
    essa_reader r;
    uint64_t count;
    essa_reader_init(&r, result, len);
    rc = essa_read_u64(&r, &count);
    for (uint64_t i = 0; rc == ESSA_OK && i < count; i++) {
        const uint8_t *word;
        size_t word_len;
        rc = essa_read_bytes(&r, &word, &word_len);
        if (rc == ESSA_OK && !essa_utf8_valid(word, word_len)) rc = ESSA_INVALID_RESULT;
    }
    free(result);
    if (rc != ESSA_OK) return main_failed("decoding the result of vocabulary", rc);
    printf("vocabulary: %llu words\n", (unsigned long long)count);
    return 0;
}
