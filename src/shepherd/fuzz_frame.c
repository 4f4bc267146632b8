/* libFuzzer harness for the pure parsers of frame.c (not built by meson; see
 * scripts/fuzz-shepherd).
 *
 * Every input is parsed as one control-socket record. Inputs of at least a
 * SPAWN header's size are also read as a SPAWN header (whatever their first
 * byte) and the rest as its complete tail, so the spawn-tail parser sees
 * plenty of well-formed headers. Besides the sanitizers' checks, the
 * parsers' promises are asserted: fixed-size frames are accepted only at
 * their exact size, and a parsed spawn tail is exactly the announced
 * strings, each inside the tail and NUL-terminated. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            __builtin_trap();                                                                      \
    } while (0)

static size_t fixed_size(int type)
{
    switch (type) {
    case NR_C_SIGNAL: return NR_C_SIGNAL_SIZE;
    case NR_C_STOP: return NR_C_STOP_SIZE;
    case NR_C_WINSIZE: return NR_C_WINSIZE_SIZE;
    default: return 0;
    }
}

/* The size of the string at p (NUL included), which must lie in the tail. */
static size_t string_in(const char *p, const char *base, size_t len)
{
    CHECK(p >= base && p < base + len && memchr(p, '\0', (size_t)(base + len - p)) != NULL);
    return strlen(p) + 1;
}

static void check_spawn(const struct nr_frame *head, const unsigned char *tail, size_t len)
{
    /* An exact-size copy: any read past the tail is an ASan report. */
    char *copy = malloc(len ? len : 1);
    size_t nslots = nr_spawn_slots(head, len);
    char **slots;
    struct nr_spawn sp;

    CHECK(copy != NULL);
    memcpy(copy, tail, len);
    if (nslots == 0) {
        free(copy);
        return;
    }
    slots = malloc(nslots * sizeof *slots);
    CHECK(slots != NULL);
    if (nr_parse_spawn(copy, len, head, slots, nslots, &sp) == 0) {
        size_t total = 0;
        CHECK(head->argc >= 1 && head->npaths >= 1);
        CHECK(sp.argv[head->argc] == NULL && sp.envp[head->envc] == NULL);
        for (uint32_t i = 0; i < head->argc; i++)
            total += string_in(sp.argv[i], copy, len);
        for (uint32_t i = 0; i < head->envc; i++)
            total += string_in(sp.envp[i], copy, len);
        for (uint32_t i = 0; i < head->npaths; i++)
            total += string_in(sp.paths[i], copy, len);
        CHECK((sp.cwd != NULL) == ((head->flags & NR_FLAG_CWD) != 0));
        if (sp.cwd != NULL)
            total += string_in(sp.cwd, copy, len);
        CHECK(total == len); /* nothing before, between or after the strings */
    }
    /* Too few slots is refused, never overrun. */
    CHECK(nr_parse_spawn(copy, len, head, slots, nslots - 1, &sp) != 0);
    free(slots);
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct nr_frame f;

    if (nr_parse_frame(data, size, &f) == 0) {
        CHECK(size >= 1 && f.type == data[0]);
        if (fixed_size(f.type) != 0)
            CHECK(size == fixed_size(f.type));
        else
            CHECK(f.tail >= data && f.tail + f.tail_len == data + size);
        if (f.type == NR_C_SPAWN)
            check_spawn(&f, f.tail, f.tail_len);
    }
    if (size >= NR_C_SPAWN_SIZE) {
        unsigned char head[NR_C_SPAWN_SIZE];
        memcpy(head, data, sizeof head);
        head[0] = NR_C_SPAWN;
        CHECK(nr_parse_frame(head, sizeof head, &f) == 0 && f.tail_len == 0);
        check_spawn(&f, data + NR_C_SPAWN_SIZE, size - NR_C_SPAWN_SIZE);
    }
    return 0;
}
