"""How a Celery worker stops: the same warm shutdown for SIGTERM and Ctrl+C, to the process or
to its whole group.

Celery's main process answers SIGTERM and the first SIGINT (Ctrl+C) alike: a warm shutdown that
finishes the tasks in hand (``celery/apps/worker.py``, ``install_worker_term_handler`` and
``install_worker_int_handler``). Two things differ from what a supervisor or a terminal expects:

* **Ctrl+C exits 1.** Celery installs the SIGINT handler with ``exitcode=EX_FAILURE``, so a
  Ctrl+C that stopped the worker cleanly looked like a failure. :func:`stopped_by_ctrl_c` lets
  ``celery_impl.worker`` tell that exit from a real error (Celery's documented
  ``worker_shutting_down`` signal says which signal started the shutdown and with which code).
* **A signal to the group kills the task in hand.** A prefork pool child ignores SIGINT
  (``celery.concurrency.prefork.WORKER_SIGIGNORE``) but keeps SIGTERM's default action, so a
  SIGTERM sent to the whole group (``kill -TERM -<pgid>``, systemd's ``KillMode=control-group``)
  kills the child mid-task, the message is requeued (``task_reject_on_worker_lost``) and runs
  again elsewhere: a duplicate with no crash. :func:`guard_pool_child` makes the child ignore a
  SIGTERM that its own pool parent did not send: the parent got the same signal and stops the
  pool warmly (``Pool.close`` + ``join``). A SIGTERM from the parent (cancelling a task on a
  lost connection, ``worker_cancel_long_running_tasks_on_connection_loss``; a cold shutdown)
  still ends the child at once.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

from celery.signals import worker_process_init, worker_shutting_down

_shutdown: dict[str, Any] = {}
"""The signal name and exit code of the shutdown Celery started in this process, if any."""


@worker_shutting_down.connect
def _remember(sig: str | None = None, how: str | None = None, exitcode: int = 0, **_: Any) -> None:
    _shutdown.update(sig=sig, how=how, exitcode=exitcode)


def stopped_by_ctrl_c(code: int) -> bool:
    """Whether ``code`` is the exit code of the warm shutdown that Ctrl+C (SIGINT) started, which
    Celery reports as 1 (``EX_FAILURE``) although nothing failed."""
    return (
        _shutdown.get("sig") == "SIGINT"
        and _shutdown.get("how") == "Warm"
        and code == _shutdown.get("exitcode")
    )


def _sigterm_from_parent_only() -> None:
    """Wait for SIGTERMs (blocked in every thread of this child) and act only on the parent's."""
    while True:
        info = signal.sigwaitinfo({signal.SIGTERM})
        if info.si_pid == os.getppid():  # the pool parent: terminate, as billiard expects
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
            os.kill(os.getpid(), signal.SIGTERM)
            return


@worker_process_init.connect
def guard_pool_child(**_: Any) -> None:
    """In a new prefork pool child: ignore a SIGTERM that did not come from its pool parent.

    SIGTERM is blocked in the child's main thread (threads started later inherit the mask) and
    taken by one daemon thread with ``sigwaitinfo``, which reads the sender's pid (``si_pid``).
    """
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    threading.Thread(target=_sigterm_from_parent_only, name="sigterm-filter", daemon=True).start()
