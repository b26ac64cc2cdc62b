"""The mutants of run.py: each breaks one key mechanism in a way the named
tests (meson test names) must catch. `find` must occur exactly once in
`file`; it is replaced by `replace`. Memory-order mutants that only a weakly
ordered CPU could expose do not belong here: x86 cannot show them."""

MUTANTS = [
    {
        "name": "no-wake-readonly",
        "why": "notify skips the wake when no waiter registered, though read-only waiters cannot",
        "file": "src/notify.c",
        "find": "if ((seg->hdr_flags & SHL__HDR_WAKE_ALWAYS) || atomic_load(&h->waiters) != 0)",
        "replace": "if (atomic_load(&h->waiters) != 0)",
        "tests": ["perm"],
    },
    {
        "name": "no-spin",
        "why": "shl_wait_ex ignores spin_ns and sleeps at once",
        "file": "src/notify.c",
        "find": "if (opts && opts->spin_ns) {",
        "replace": "if (0 && opts && opts->spin_ns) {",
        "tests": ["notify"],
    },
    {
        "name": "recovery-not-consistent",
        "why": "a lock whose holder died is taken without pthread_mutex_consistent",
        "file": "src/lock.c",
        "find": "pthread_mutex_consistent(&seg->hdr->lock.mutex);",
        "replace": "",
        "tests": ["lock"],
    },
]
