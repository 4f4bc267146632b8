/* Frames of the shepherd protocol: pure parsing and encoding, no I/O.
 * Layouts and codes come from protocol.h (generated from wire.py). */
#ifndef NR_FRAME_H
#define NR_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "protocol.h"

static inline void nr_put_u16(unsigned char *p, uint16_t v) { p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8); }
static inline void nr_put_u32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static inline void nr_put_u64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static inline uint16_t nr_get_u16(const unsigned char *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t nr_get_u32(const unsigned char *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline uint64_t nr_get_u64(const unsigned char *p) {
    return (uint64_t)nr_get_u32(p) | ((uint64_t)nr_get_u32(p + 4) << 32);
}

/* One decoded Python -> shepherd frame. For SPAWN, SPAWN_PART, CGROUP and
 * ATTRS, `tail` points into the record it was parsed from. `flags` is
 * SPAWN's FLAG_*, CGROUP's CGROUP_REMOVE or ATTRS' ATTR_*. */
struct nr_frame {
    int type;
    uint32_t flags, kill_timeout_ms, argc, envc, npaths, signo, role;
    uint32_t umask, nrlimits;
    int32_t nice;
    uint16_t rows, cols;
    const unsigned char *tail;
    size_t tail_len;
};

/* Parse one control-socket record. Returns 0, or NR_ERR_MALFORMED for an
 * unknown type, a record of the wrong size, or a CGROUP or ATTRS record
 * that nr_parse_cgroup or nr_parse_attrs refuses. Never reads past len. */
int nr_parse_frame(const unsigned char *buf, size_t len, struct nr_frame *out);

/* Check a parsed CGROUP frame: a known role, no flag but CGROUP_REMOVE, and a
 * tail that is exactly one NUL-terminated absolute path, NUL included at
 * most CGROUP_PATH_MAX bytes (PATH_MAX, as the kernel counts). Returns 0, and
 * then `tail` is a C string, or NR_ERR_MALFORMED. Never reads past the tail. */
int nr_parse_cgroup(const struct nr_frame *f);

/* Check a parsed ATTRS frame: no flag but ATTR_*; with ATTR_UMASK a umask
 * of at most 0777, with ATTR_NICE a nice value in -20..19, and a field whose
 * flag is clear 0; nrlimits at most MAX_RLIMITS; a tail of exactly nrlimits
 * entries of ATTRS_RLIMIT_SIZE bytes, followed with ATTR_AFFINITY by a mask
 * of 1..AFFINITY_MAX_BYTES bytes and otherwise by nothing. Returns 0 or
 * NR_ERR_MALFORMED. Never reads past the tail. */
int nr_parse_attrs(const struct nr_frame *f);

/* One resource limit of a parsed ATTRS frame (i < nrlimits). */
struct nr_rlimit {
    uint32_t resource;
    uint64_t cur, max; /* RLIM_INFINITY is 2**64-1 */
};
void nr_attrs_rlimit(const struct nr_frame *f, uint32_t i, struct nr_rlimit *out);

/* The affinity mask of a parsed ATTRS frame: its bytes and their number
 * (0 without ATTR_AFFINITY). CPU n is bit n % 8 of byte n / 8. */
const unsigned char *nr_attrs_mask(const struct nr_frame *f, size_t *len);

/* The strings of a complete spawn tail, pointing into the tail itself. */
struct nr_spawn {
    char **argv;  /* argc + 1 entries, NULL-terminated */
    char **envp;  /* envc + 1 entries, NULL-terminated */
    char **paths; /* npaths entries */
    char *cwd;    /* NULL without NR_FLAG_CWD */
};

/* How many pointer slots nr_parse_spawn needs for this header and a tail of
 * `len` bytes, or 0 when the counts cannot be right (argc or npaths is 0, or
 * more strings are announced than `len` bytes can hold: every string takes at
 * least its NUL). Call it before allocating, so absurd counts cost nothing. */
size_t nr_spawn_slots(const struct nr_frame *head, size_t len);

/* Split `tail` (len bytes, not modified) into the strings the SPAWN header
 * announced; `slots` holds `nslots` pointers (nr_spawn_slots). Returns 0, or
 * NR_ERR_MALFORMED unless the strings match the counts exactly: each ends with
 * a NUL and nothing follows the last. */
int nr_parse_spawn(char *tail, size_t len, const struct nr_frame *head, char **slots, size_t nslots,
                   struct nr_spawn *out);

#endif
