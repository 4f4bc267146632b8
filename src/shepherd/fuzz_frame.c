/* libFuzzer harness for the pure parsers of frame.c (not built by meson; see
 * scripts/fuzz-shepherd).
 *
 * Every input is parsed as one control-socket record. Inputs of at least a
 * SPAWN header's size are also read as a SPAWN header (whatever their first
 * byte) and the rest as its complete tail, so the spawn-tail parser sees
 * plenty of well-formed headers; every input is also read as a CGROUP
 * record's role, flags and tail (the first eight bytes, the rest), so the
 * cgroup checks see known roles and paths often. Besides the sanitizers'
 * checks, the parsers' promises are asserted: fixed-size frames are accepted
 * only at their exact size, a parsed spawn tail is exactly the announced
 * strings, each inside the tail and NUL-terminated, and an accepted CGROUP
 * record has a known role and flags and one absolute path as its tail.
 * Every input is also read as an ATTRS record's flags, umask, nice and
 * nrlimits (the first sixteen bytes, small values favoured) and tail (the
 * rest): an accepted one has known flags, values in range, and a tail of
 * exactly its limits and mask, every entry of which is read back. */
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

/* What nr_parse_cgroup promises, checked on an exact-size copy of the tail
 * (any read past it is an ASan report). */
static void check_cgroup(uint32_t role, uint32_t flags, const unsigned char *tail, size_t len)
{
    unsigned char *copy = malloc(len ? len : 1);
    struct nr_frame f;
    int ok;

    CHECK(copy != NULL);
    memcpy(copy, tail, len);
    memset(&f, 0, sizeof f);
    f.type = NR_C_CGROUP;
    f.role = role;
    f.flags = flags;
    f.tail = copy;
    f.tail_len = len;
    ok = nr_parse_cgroup(&f) == 0;
    if (ok) {
        CHECK(role >= NR_CGROUP_V2 && role <= NR_CGROUP_PARENT);
        CHECK((flags & ~(uint32_t)NR_CGROUP_REMOVE) == 0);
        CHECK(len >= 2 && len <= NR_CGROUP_PATH_MAX && copy[0] == '/');
        CHECK(strlen((const char *)copy) + 1 == len);
    } else {
        /* Refused: so something is wrong with it. */
        CHECK(role < NR_CGROUP_V2 || role > NR_CGROUP_PARENT || (flags & ~(uint32_t)NR_CGROUP_REMOVE) ||
              len < 2 || len > NR_CGROUP_PATH_MAX || copy[0] != '/' ||
              memchr(copy, '\0', len) != copy + len - 1);
    }
    free(copy);
}

/* What nr_parse_attrs promises, checked on an exact-size copy of the tail;
 * an accepted record's limits and mask are all read (inside the copy). */
static void check_attrs(const struct nr_frame *given)
{
    const uint32_t known = NR_ATTR_UMASK | NR_ATTR_NICE | NR_ATTR_AFFINITY;
    unsigned char *copy = malloc(given->tail_len ? given->tail_len : 1);
    struct nr_frame f = *given;
    size_t limits = (size_t)f.nrlimits * NR_ATTRS_RLIMIT_SIZE, len;
    int ok, good;

    CHECK(copy != NULL);
    memcpy(copy, given->tail, given->tail_len);
    f.tail = copy;
    ok = nr_parse_attrs(&f) == 0;
    good = !(f.flags & ~known) && ((f.flags & NR_ATTR_UMASK) ? f.umask <= 0777 : f.umask == 0) &&
           ((f.flags & NR_ATTR_NICE) ? f.nice >= -20 && f.nice <= 19 : f.nice == 0) &&
           f.nrlimits <= NR_MAX_RLIMITS && f.tail_len >= limits &&
           ((f.flags & NR_ATTR_AFFINITY) ? f.tail_len - limits >= 1 && f.tail_len - limits <= NR_AFFINITY_MAX_BYTES
                                         : f.tail_len == limits);
    CHECK(ok == good);
    if (ok) {
        const unsigned char *mask = nr_attrs_mask(&f, &len);
        uint64_t sum = 0;
        for (uint32_t i = 0; i < f.nrlimits; i++) {
            struct nr_rlimit rl;
            nr_attrs_rlimit(&f, i, &rl);
            sum += rl.resource + rl.cur + rl.max;
        }
        CHECK(mask == copy + limits && len == ((f.flags & NR_ATTR_AFFINITY) ? f.tail_len - limits : 0));
        for (size_t i = 0; i < len; i++)
            sum += mask[i];
        (void)sum;
    }
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
        if (f.type == NR_C_CGROUP)
            CHECK(size > NR_C_CGROUP_SIZE && f.tail[f.tail_len - 1] == '\0' && f.tail[0] == '/' &&
                  strlen((const char *)f.tail) + 1 == f.tail_len);
        if (f.type == NR_C_ATTRS) {
            CHECK(size >= NR_C_ATTRS_SIZE && f.nrlimits <= NR_MAX_RLIMITS);
            check_attrs(&f);
        }
    }
    if (size >= NR_C_ATTRS_SIZE && data[0] == NR_C_ATTRS) {
        /* An ATTRS record is accepted exactly when its fields pass the check. */
        struct nr_frame g;
        memset(&g, 0, sizeof g);
        g.flags = nr_get_u32(data + NR_C_ATTRS_FLAGS);
        g.umask = nr_get_u32(data + NR_C_ATTRS_UMASK);
        g.nice = (int32_t)nr_get_u32(data + NR_C_ATTRS_NICE);
        g.nrlimits = nr_get_u32(data + NR_C_ATTRS_NRLIMITS);
        g.tail = data + NR_C_ATTRS_SIZE;
        g.tail_len = size - NR_C_ATTRS_SIZE;
        CHECK((nr_parse_frame(data, size, &f) == 0) == (nr_parse_attrs(&g) == 0));
    }
    if (size >= 16) {
        /* Small fields are the interesting ones: the tail must then match
         * them exactly, which random bytes rarely do unless nrlimits is small. */
        struct nr_frame g;
        memset(&g, 0, sizeof g);
        g.type = NR_C_ATTRS;
        g.flags = data[0] & 0x0f;
        g.umask = (data[1] & 1) ? nr_get_u32(data + 4) : (uint32_t)(data[4] | (data[5] & 3) << 8);
        g.nice = (data[1] & 2) ? (int32_t)nr_get_u32(data + 8) : (int32_t)(data[8] % 42) - 21;
        g.nrlimits = (data[1] & 4) ? nr_get_u32(data + 12) : (uint32_t)data[12] % 4;
        if (!(g.flags & NR_ATTR_UMASK) && (data[2] & 1))
            g.umask = 0; /* often right for a clear flag */
        if (!(g.flags & NR_ATTR_NICE) && (data[2] & 2))
            g.nice = 0;
        if (data[3] & 1) /* now and then any flags */
            g.flags = nr_get_u32(data);
        g.tail = data + 16;
        g.tail_len = size - 16;
        check_attrs(&g);
    }
    if (size >= NR_C_CGROUP_SIZE && data[0] == NR_C_CGROUP) {
        /* A CGROUP record is accepted exactly when its fields pass the check. */
        struct nr_frame g;
        memset(&g, 0, sizeof g);
        g.role = nr_get_u32(data + NR_C_CGROUP_ROLE);
        g.flags = nr_get_u32(data + NR_C_CGROUP_FLAGS);
        g.tail = data + NR_C_CGROUP_SIZE;
        g.tail_len = size - NR_C_CGROUP_SIZE;
        CHECK((nr_parse_frame(data, size, &f) == 0) == (nr_parse_cgroup(&g) == 0));
    }
    if (size >= 8) {
        /* Small roles and flags are the interesting ones: keep their low bits. */
        uint32_t role = (uint32_t)data[0] % 6, flags = (uint32_t)data[4] % 4;
        if (data[1] & 1) /* and now and then any value */
            role = (uint32_t)data[0] | (uint32_t)data[1] << 8 | (uint32_t)data[2] << 16 | (uint32_t)data[3] << 24;
        if (data[5] & 1)
            flags = (uint32_t)data[4] | (uint32_t)data[5] << 8 | (uint32_t)data[6] << 16 | (uint32_t)data[7] << 24;
        check_cgroup(role, flags, data + 8, size - 8);
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
