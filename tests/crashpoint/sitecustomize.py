"""A crash at a known point, for kill-and-resume tests (on ``PYTHONPATH`` of the run under test only).

With ``AFFECTFLOW_CRASH_AFTER_CHUNKS=N`` an ``affectflow`` process SIGKILLs its whole process group
(itself and the temporary Prefect server it started) the moment the N-th chunk of a feature group
is marked done, as a machine that loses power would. The test then knows exactly how many chunks
were done, instead of polling for a moment between the first and the last chunk.
"""

import os
import sys

if os.environ.get("AFFECTFLOW_CRASH_AFTER_CHUNKS") and os.path.basename(sys.argv[0]) == "affectflow":
    import signal
    import threading

    from featurestore.completion import StepGroup

    _crash_after = int(os.environ["AFFECTFLOW_CRASH_AFTER_CHUNKS"])
    _mark_chunk_done = StepGroup.mark_chunk_done
    _lock = threading.Lock()
    _done = 0

    def _mark_then_maybe_crash(self: StepGroup, index: int) -> None:
        global _done
        with _lock:  # chunks finishing at once on other threads wait here: exactly N get marked
            _mark_chunk_done(self, index)
            if self.meta["kind"] == "features":
                _done += 1
                if _done >= _crash_after:
                    os.killpg(os.getpgrp(), signal.SIGKILL)

    StepGroup.mark_chunk_done = _mark_then_maybe_crash
