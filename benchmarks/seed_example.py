"""The README's first example as a program that reports its memory (the seed_memory row).

``python seed_example.py PATH N`` opens PATH as the example does, makes N changes of
``STATE.last_id`` and never calls close(). The very last thing it does, after the library's own
exit handlers (its compaction at exit), is print one JSON line: ``baseline``, the peak resident
memory before the state was opened (Python, the library and json imported), and ``peak``, the
peak of the whole run, both in bytes.
"""

import atexit
import json
import sys


def peak_rss_bytes() -> int:
    """This process's peak resident memory: VmHWM where /proc has it (Linux), else ru_maxrss.

    Not Linux's ru_maxrss: it keeps, across exec, the peak of the process that started this
    one (a benchmark worker, bigger than either library), so every engine read about the same.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # (kB)
    except OSError:
        pass
    import resource  # POSIX only, like the measurement

    usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return usage if sys.platform == "darwin" else usage * 1024  # (the BSDs report KiB)


if __name__ == "__main__":
    # Registered before the library is imported, so it runs after the library's exit handlers.
    atexit.register(lambda: print(json.dumps({"baseline": baseline, "peak": peak_rss_bytes()})))

    from persistedstate import PersistedState

    baseline = peak_rss_bytes()
    STATE = PersistedState(sys.argv[1], last_id=0)  # (module level, as in the README)
    for current_id in range(STATE.last_id + 1, int(sys.argv[2]) + 1):
        STATE.last_id = current_id
