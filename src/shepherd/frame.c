/* Pure parsing of control-socket records: no I/O, no allocation, never a
 * read outside the buffer given (fuzzed by fuzz_frame.c). */
#include "frame.h"

#include <string.h>

int nr_parse_frame(const unsigned char *buf, size_t len, struct nr_frame *out)
{
    memset(out, 0, sizeof *out);
    if (len < 1)
        return NR_ERR_MALFORMED;
    out->type = buf[0];
    switch (buf[0]) {
    case NR_C_SPAWN:
        if (len < NR_C_SPAWN_SIZE)
            return NR_ERR_MALFORMED;
        out->flags = nr_get_u32(buf + NR_C_SPAWN_FLAGS);
        out->kill_timeout_ms = nr_get_u32(buf + NR_C_SPAWN_KILL_TIMEOUT_MS);
        out->argc = nr_get_u32(buf + NR_C_SPAWN_ARGC);
        out->envc = nr_get_u32(buf + NR_C_SPAWN_ENVC);
        out->npaths = nr_get_u32(buf + NR_C_SPAWN_NPATHS);
        out->tail = buf + NR_C_SPAWN_SIZE;
        out->tail_len = len - NR_C_SPAWN_SIZE;
        return 0;
    case NR_C_SPAWN_PART:
        out->tail = buf + NR_C_SPAWN_PART_SIZE;
        out->tail_len = len - NR_C_SPAWN_PART_SIZE;
        return 0;
    case NR_C_SIGNAL:
        if (len != NR_C_SIGNAL_SIZE)
            return NR_ERR_MALFORMED;
        out->signo = nr_get_u32(buf + NR_C_SIGNAL_SIGNO);
        return 0;
    case NR_C_STOP:
        if (len != NR_C_STOP_SIZE)
            return NR_ERR_MALFORMED;
        out->kill_timeout_ms = nr_get_u32(buf + NR_C_STOP_KILL_TIMEOUT_MS);
        return 0;
    case NR_C_CGROUP:
        if (len < NR_C_CGROUP_SIZE)
            return NR_ERR_MALFORMED;
        out->role = nr_get_u32(buf + NR_C_CGROUP_ROLE);
        out->flags = nr_get_u32(buf + NR_C_CGROUP_FLAGS);
        out->tail = buf + NR_C_CGROUP_SIZE;
        out->tail_len = len - NR_C_CGROUP_SIZE;
        return nr_parse_cgroup(out);
    case NR_C_ATTRS:
        if (len < NR_C_ATTRS_SIZE)
            return NR_ERR_MALFORMED;
        out->flags = nr_get_u32(buf + NR_C_ATTRS_FLAGS);
        out->umask = nr_get_u32(buf + NR_C_ATTRS_UMASK);
        out->nice = (int32_t)nr_get_u32(buf + NR_C_ATTRS_NICE);
        out->nrlimits = nr_get_u32(buf + NR_C_ATTRS_NRLIMITS);
        out->tail = buf + NR_C_ATTRS_SIZE;
        out->tail_len = len - NR_C_ATTRS_SIZE;
        return nr_parse_attrs(out);
    case NR_C_WINSIZE:
        if (len != NR_C_WINSIZE_SIZE)
            return NR_ERR_MALFORMED;
        out->rows = nr_get_u16(buf + NR_C_WINSIZE_ROWS);
        out->cols = nr_get_u16(buf + NR_C_WINSIZE_COLS);
        return 0;
    default:
        return NR_ERR_MALFORMED;
    }
}

int nr_parse_cgroup(const struct nr_frame *f)
{
    switch (f->role) {
    case NR_CGROUP_V2:
    case NR_CGROUP_V1:
    case NR_CGROUP_MEMORY_V1:
    case NR_CGROUP_PARENT:
        break;
    default:
        return NR_ERR_MALFORMED;
    }
    if (f->flags & ~(uint32_t)NR_CGROUP_REMOVE)
        return NR_ERR_MALFORMED; /* a flag this shepherd does not know could mean anything */
    /* "/" and its NUL at least; the first NUL is the last byte. */
    if (f->tail_len < 2 || f->tail_len > NR_CGROUP_PATH_MAX || f->tail[0] != '/' ||
        memchr(f->tail, '\0', f->tail_len) != f->tail + f->tail_len - 1)
        return NR_ERR_MALFORMED;
    return 0;
}

int nr_parse_attrs(const struct nr_frame *f)
{
    const uint32_t known = NR_ATTR_UMASK | NR_ATTR_NICE | NR_ATTR_AFFINITY;
    size_t limits, mask;

    if (f->flags & ~known)
        return NR_ERR_MALFORMED; /* an attribute this shepherd cannot give */
    if ((f->flags & NR_ATTR_UMASK) ? f->umask > 0777 : f->umask != 0)
        return NR_ERR_MALFORMED;
    if ((f->flags & NR_ATTR_NICE) ? (f->nice < -20 || f->nice > 19) : f->nice != 0)
        return NR_ERR_MALFORMED;
    if (f->nrlimits > NR_MAX_RLIMITS)
        return NR_ERR_MALFORMED;
    limits = (size_t)f->nrlimits * NR_ATTRS_RLIMIT_SIZE; /* at most 64 * 20: no overflow */
    if (f->tail_len < limits)
        return NR_ERR_MALFORMED;
    mask = f->tail_len - limits;
    if ((f->flags & NR_ATTR_AFFINITY) ? (mask < 1 || mask > NR_AFFINITY_MAX_BYTES) : mask != 0)
        return NR_ERR_MALFORMED;
    return 0;
}

void nr_attrs_rlimit(const struct nr_frame *f, uint32_t i, struct nr_rlimit *out)
{
    const unsigned char *p = f->tail + (size_t)i * NR_ATTRS_RLIMIT_SIZE;

    out->resource = nr_get_u32(p);
    out->cur = nr_get_u64(p + 4);
    out->max = nr_get_u64(p + 12);
}

const unsigned char *nr_attrs_mask(const struct nr_frame *f, size_t *len)
{
    size_t limits = (size_t)f->nrlimits * NR_ATTRS_RLIMIT_SIZE;

    *len = (f->flags & NR_ATTR_AFFINITY) ? f->tail_len - limits : 0;
    return f->tail + limits;
}

/* argv, envp and paths (+ cwd) strings, with a NULL after argv and envp. */
static size_t spawn_strings(const struct nr_frame *head)
{
    return (size_t)head->argc + head->envc + head->npaths + ((head->flags & NR_FLAG_CWD) ? 1 : 0);
}

size_t nr_spawn_slots(const struct nr_frame *head, size_t len)
{
    if (head->argc < 1 || head->npaths < 1)
        return 0;
    /* In 64 bits: three u32 counts cannot overflow; in 32 bits compare first. */
    if (head->argc > len || head->envc > len || head->npaths > len || spawn_strings(head) > len)
        return 0;
    return spawn_strings(head) + 2;
}

int nr_parse_spawn(char *tail, size_t len, const struct nr_frame *head, char **slots, size_t nslots,
                   struct nr_spawn *out)
{
    size_t want, n = 0, pos = 0;

    memset(out, 0, sizeof *out);
    if (nr_spawn_slots(head, len) == 0 || nslots < nr_spawn_slots(head, len))
        return NR_ERR_MALFORMED;
    want = spawn_strings(head);
    /* slots: argv[argc] NULL envp[envc] NULL paths[npaths] [cwd] */
    while (pos < len) {
        const char *nul = memchr(tail + pos, '\0', len - pos);
        if (nul == NULL || n == want)
            return NR_ERR_MALFORMED; /* an unterminated string, or one too many */
        slots[n + (n >= head->argc) + (n >= (size_t)head->argc + head->envc)] = tail + pos;
        n++;
        pos = (size_t)(nul - tail) + 1;
    }
    if (n != want)
        return NR_ERR_MALFORMED;
    out->argv = slots;
    slots[head->argc] = NULL;
    out->envp = slots + head->argc + 1;
    out->envp[head->envc] = NULL;
    out->paths = out->envp + head->envc + 1;
    out->cwd = (head->flags & NR_FLAG_CWD) ? out->paths[head->npaths] : NULL;
    return 0;
}
