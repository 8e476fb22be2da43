"""``python -m labeling``: run one command, then leave without racing native threads at shutdown.

The command's work is done when :func:`labeling.cli.main` returns. The process then closes its
database files and stops their linger timers, flushes its output and ends with ``os._exit``: the
interpreter's own shutdown would stop any thread still inside torch, FAISS or DuckDB native code,
which aborts the process ("terminate called ...", exit 134) after it had already succeeded, and the
exit code would no longer say how the command went.
"""
import logging
import os
import sys
import traceback

from labeling.cli import main


def _run() -> int:
    try:
        code = main()
    except SystemExit as exc:  # argparse's --help and usage errors
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 - an unexpected error still gets its traceback and exit code 1
        traceback.print_exc()
        code = 1
    return code


if __name__ == "__main__":
    rc = _run()
    from storage.db import release_files

    try:
        release_files(stop_timers=True)
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except OSError:  # a closed pipe (``| head``): nothing more can be said there
                pass
    finally:
        os._exit(rc)
