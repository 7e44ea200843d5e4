"""Publish through an implementation's own producer from a separate process, optionally paced.

The lab publishes in its own process when nothing differs; this program is for a producer that
needs its own environment (a defaults row without publisher confirms: Celery reads
``confirm_publish`` when its app is built) or its own CPU (a steady offered rate while the lab
watches the queue). It writes a JSON file: the message_ids confirmed in publish order, the
seconds the publishing took, its own CPU seconds over them (``getrusage``, user + system: the
producer's cost, :mod:`lab.run.cost`), and the publish errors the producer raised::

    python -m lab.run.publisher --impl celery --count 1000 --out ids.json
    python -m lab.run.publisher --impl pika --rate 200 --seconds 5 --chunk 20 --out ids.json

With ``--rate`` the bodies are handed to the producer at that many per second (one producer
call per ``--chunk`` messages, so a failed call costs at most one chunk); a call that raises
(broker lost mid-publish, the queue's node down) is counted as an error, whatever the producer
raised, and the next chunk goes on after ``--retry-seconds``.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, overload

from lab.scenario import ScenarioFailed
from shared import cli
from shared.errors import MqlabError
from testbed import registry
from testbed.process import GroupProcess


class Paced(Sequence[str]):
    """``count`` copies of ``body``, each handed out no earlier than ``start + i / rate``.

    The producers iterate their ``bodies`` lazily, one publish per body, so iterating this
    paces the publishing without touching the producer.
    """

    def __init__(self, body: str, count: int, rate: float, start: float, first: int = 0) -> None:
        self.body, self.n, self.rate, self.start, self.first = body, count, rate, start, first

    def __len__(self) -> int:
        return self.n

    @overload
    def __getitem__(self, i: int) -> str: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[str]: ...
    def __getitem__(self, i: int | slice) -> str | Sequence[str]:
        if isinstance(i, slice):
            return [self.body] * len(range(*i.indices(self.n)))
        return self.body

    def __iter__(self) -> Iterator[str]:
        for i in range(self.n):
            delay = self.start + (self.first + i) / self.rate - time.time()
            if delay > 0:
                time.sleep(delay)
            yield self.body


class Publisher:
    """A running :mod:`lab.run.publisher` process; :meth:`result` waits for its JSON output."""

    def __init__(self, process: GroupProcess, out: Path, timeout: float) -> None:
        self.process, self.out, self.timeout = process, out, timeout

    def result(self, timeout: float | None = None) -> dict[str, Any]:
        """``{"ids", "seconds", "started_at", "errors", "cpu_seconds"}`` once the producer is
        done.

        Raises:
            ScenarioFailed: it failed or did not finish in time.
        """
        code = self.process.wait(timeout or self.timeout)
        if code != 0:
            self.process.kill()
            raise ScenarioFailed(
                f"producer {'timed out' if code is None else f'exited {code}'}: "
                f"{self.process.output()[-300:]}"
            )
        data: dict[str, Any] = json.loads(self.out.read_text())
        data["ids"] = data.pop("message_ids")
        return data


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.run.publisher", description=__doc__)
    parser.add_argument("--impl", required=True)
    parser.add_argument("--amqp-url", required=True)
    parser.add_argument("--body", default="task")
    parser.add_argument("--count", type=int, default=0, help="unpaced: publish this many")
    parser.add_argument("--rate", type=float, default=0.0, help="paced: messages per second")
    parser.add_argument("--seconds", type=float, default=0.0, help="paced: for this long")
    parser.add_argument("--chunk", type=int, default=50, help="paced: messages per call")
    parser.add_argument("--retry-seconds", type=float, default=0.2)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    impl = registry.get(args.impl)
    ids: list[str] = []
    errors: list[dict[str, object]] = []
    started = time.time()
    before = resource.getrusage(resource.RUSAGE_SELF)
    if args.rate <= 0:
        ids = impl.publish_work([args.body] * args.count, amqp_url=args.amqp_url)
    else:
        total = int(args.rate * args.seconds)
        offered = 0
        while offered < total:
            n = min(args.chunk, total - offered)
            bodies = Paced(args.body, n, args.rate, started, first=offered)
            offered += n
            try:
                ids += impl.publish_work(bodies, amqp_url=args.amqp_url)
            except Exception as e:  # any failed call is a publish error the producer saw
                text = str(e) if isinstance(e, MqlabError) else f"{type(e).__name__}: {e}"
                errors.append({"at": time.time(), "chunk": n, "error": text[:200]})
                time.sleep(args.retry_seconds)
    seconds = time.time() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    out = {"message_ids": ids, "seconds": seconds, "started_at": started, "errors": errors,
           "cpu_seconds": cpu}  # fmt: skip
    Path(args.out).write_text(json.dumps(out))
    return 0


if __name__ == "__main__":
    cli.run(main)
