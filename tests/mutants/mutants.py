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
    {
        "name": "reader-no-spin",
        "why": "shl_reader_set_spin is ignored: a reader sleeps at once",
        "file": "src/stream.c",
        "find": "void shl_reader_set_spin(shl_reader *r, uint32_t spin_ns) { r->spin_ns = spin_ns; }",
        "replace": "void shl_reader_set_spin(shl_reader *r, uint32_t spin_ns) { (void)r, (void)spin_ns; }",
        "tests": ["stream"],
    },
    {
        "name": "reader-no-pin",
        "why": "a reader never sets its pin bit: the writer may rewrite a slot it reads",
        "file": "src/stream.c",
        "find": "if (r->held[slot]++ == 0) atomic_fetch_or(&r->entry->pinned, 1ull << slot);",
        "replace": "r->held[slot]++;",
        "tests": ["stream"],
    },
    {
        "name": "reader-no-recheck",
        "why": "a reader takes the slot it pinned without checking it still holds its frame",
        "file": "src/stream.c",
        "find": "if (atomic_load(&r->s.slot[slot].seq) == seq) return true;",
        "replace": "(void)seq; return true;",
        "tests": ["stream_roles"],
    },
    {
        "name": "reap-live-reader",
        "why": "reap_if_dead clears an entry whose role lock a live reader holds",
        "file": "src/stream.c",
        "find": "if (shl__role_take(s->role.fd, SHL__ROLE_READER(i)) != 0) return false;",
        "replace": "(void)shl__role_take(s->role.fd, SHL__ROLE_READER(i));",
        "tests": ["stream"],
    },
    {
        "name": "torn-check-ends-only",
        "why": "the tests' torn check compares only the first and last word of a frame",
        "file": "tests/c/testutil_stream.h",
        "find": "for (uint64_t i = 0; i < words; i++) bad += w[i] != tag;",
        "replace": "bad = (w[0] != tag) + (w[words - 1] != tag);",
        "tests": ["stream"],
    },
    {
        "name": "example-check-row-starts",
        "why": "the example reader checks only the stamp at the start of each row",
        "file": "examples/c/frame_stamp.h",
        "find": "for (uint64_t i = 8; i < row_bytes; i++) diff |= (row[i] ^ bits[i % 8]) & 3u;",
        "replace": "",
        "tests": ["stream_demo"],
    },
]
