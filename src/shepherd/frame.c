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

int nr_parse_spawn(char *tail, size_t len, const struct nr_frame *head, char **slots, struct nr_spawn *out)
{
    size_t want = (size_t)head->argc + head->envc + head->npaths + ((head->flags & NR_FLAG_CWD) ? 1 : 0);
    size_t n = 0, pos = 0;

    if (head->argc < 1 || head->npaths < 1)
        return NR_ERR_MALFORMED;
    /* Count strings: every one ends with a NUL and nothing follows the last. */
    while (pos < len) {
        const char *nul = memchr(tail + pos, '\0', len - pos);
        if (nul == NULL)
            return NR_ERR_MALFORMED; /* trailing bytes without a terminator */
        if (n == want)
            return NR_ERR_MALFORMED; /* more strings than announced */
        slots[n + (n >= head->argc) + (n >= (size_t)head->argc + head->envc)] = tail + pos;
        n++;
        pos = (size_t)(nul - tail) + 1;
    }
    if (n != want)
        return NR_ERR_MALFORMED;
    /* slots: argv[argc] NULL envp[envc] NULL paths[npaths] [cwd] */
    out->argv = slots;
    slots[head->argc] = NULL;
    out->envp = slots + head->argc + 1;
    out->envp[head->envc] = NULL;
    out->paths = out->envp + head->envc + 1;
    out->cwd = (head->flags & NR_FLAG_CWD) ? out->paths[head->npaths] : NULL;
    return 0;
}
