"""mqlab: RabbitMQ work queues built several ways, and a lab that compares them.

examples:
  mqlab broker up --detach            a private RabbitMQ node (--cluster: three)
  eval "$(mqlab broker env --show-password)"
  mqlab worker --impl pika            one worker in the foreground
  mqlab send --impl pika "A task..."  three dots: three seconds of work
  mqlab compare --quick               about 2 min; writes reports/<UTC time>/
  mqlab compare --impl pika,celery --scenario latency
  mqlab scenarios                     the scenarios and their --set parameters
  mqlab diff OLD NEW                  two runs, changes beyond noise marked
  mqlab broker down

Each command has its own --help.
"""

from __future__ import annotations

import argparse
import os
import textwrap

from lab.commands.broker import amqp_url, cmd_broker
from lab.commands.compare import cmd_compare
from lab.commands.diff import cmd_diff
from lab.commands.usage import UsageError, console, one_impl
from lab.scenarios import ALL, KNOWN, ON_DEMAND
from shared import cli as shared_cli
from shared.impl import WorkerSpec
from testbed import registry


def cmd_worker(args: argparse.Namespace) -> int:
    impl = one_impl(args.impl)
    problem = shared_cli.worker_option_problem(args.prefetch, args.slowdown)
    if problem:
        raise UsageError(problem)
    spec = WorkerSpec(
        name=args.name,
        prefetch=args.prefetch,
        concurrency=args.concurrency,
        slowdown=args.slowdown,
        journal=args.journal,
        amqp_url=amqp_url(args.amqp_url),
    )
    command = impl.worker_command(spec)
    env = {**os.environ, **command.env}
    os.execvpe(command.argv[0], list(command.argv), env)


def cmd_send(args: argparse.Namespace) -> int:
    impl = one_impl(args.impl)
    if not 1 <= args.count <= shared_cli.MAX_COUNT:
        raise UsageError(f"--count must be 1 to {shared_cli.MAX_COUNT} (run it again for more)")
    text = " ".join(args.body) or "Hello World!"
    ids = impl.publish_work([text] * args.count, amqp_url=amqp_url(args.amqp_url))
    for message_id in ids[:10]:
        print(f" [x] Sent {text} ({message_id})")
    if len(ids) > 10:
        print(f" [x] ... {len(ids)} messages in all")
    return 0


def scenario_listing() -> str:
    """Every scenario with its parameters: name, full value, ``--quick`` value, what it is."""
    lines = []
    for name, scenario in KNOWN.items():
        when = " (on demand: only when --scenario names it)" if name in ON_DEMAND else ""
        lines.append(f"{name}: {scenario.title}{when}")
        for p in scenario.params:
            full, quick = (",".join(map(str, v)) if isinstance(v, tuple) else str(v)
                           for v in (p.full, p.quick))  # fmt: skip
            lines += textwrap.wrap(
                f"--set {name}.{p.name}={full}  (--quick: {quick}) {p.help}",
                width=78,
                initial_indent="  ",
                subsequent_indent="      ",
                break_on_hyphens=False,
            )
    return "\n".join(lines)


def cmd_scenarios(args: argparse.Namespace) -> int:
    console.print(scenario_listing(), markup=False, highlight=False)
    return 0


BROKER_EXAMPLES = """examples:
  mqlab broker up --detach
  mqlab broker env --show-password
  mqlab broker status
  mqlab broker purge --impl pika
  mqlab broker up --cluster --detach
  mqlab broker kill 2
  mqlab broker start 2
  mqlab broker down
"""


# -- entry point ------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    """The ``mqlab`` argument parser."""
    p = shared_cli.Parser(
        prog="mqlab", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser(
        "compare",
        help="measure the implementations side by side",
        description="Measure the implementations side by side. Scenario parameters:\n\n"
        + scenario_listing(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    c.add_argument("--impl", action="append", help="implementation(s), comma-separated")
    c.add_argument(
        "--scenario",
        action="append",
        help=f"scenario(s): {', '.join(ALL)} (default: all), or {', '.join(ON_DEMAND)}",
    )
    c.add_argument(
        "--repeat", type=int, default=1, help="interleaved repeats per row (median, 95%% interval)"
    )
    c.add_argument(
        "--quick",
        action="store_true",
        help="small N, concurrency 1 and 4: about 2 min for three implementations on 2 cores",
    )
    c.add_argument(
        "--queue-type", action="append", help="classic, quorum or both (comma-separated)"
    )
    c.add_argument(
        "--topology",
        action="append",
        help="single (one node), cluster (three nodes, for node loss) or both",
    )
    c.add_argument("--out", help="output directory (default reports/<UTC timestamp>)")
    c.add_argument("--amqp-url", help="use this broker instead of a private node")
    c.add_argument(
        "--management-url",
        help="with --amqp-url: its management API (default MQLAB_MANAGEMENT_URL, else "
        "http://<AMQP host>:15672)",
    )
    c.add_argument(
        "--set",
        action="append",
        metavar="SCENARIO.PARAM=VALUE",
        help="a scenario parameter (listed above and by 'mqlab scenarios'); repeatable",
    )
    c.add_argument(
        "--keep-journals", action="store_true", help="copy journals and worker logs to --out"
    )
    c.set_defaults(func=cmd_compare)

    d = sub.add_parser(
        "diff",
        help="two runs side by side, marking the differences beyond noise",
        description="Two runs' figures side by side (same rows and figures); a difference is "
        "beyond noise when the two 95%% intervals do not overlap.",
    )
    d.add_argument("old", help="the old run's results.json (or its report directory)")
    d.add_argument("new", help="the new run's results.json (or its report directory)")
    d.add_argument("--changes", action="store_true", help="only the figures beyond noise")
    d.set_defaults(func=cmd_diff)

    sc = sub.add_parser("scenarios", help="list the scenarios and their --set parameters")
    sc.set_defaults(func=cmd_scenarios)

    b = sub.add_parser(
        "broker",
        help="a private RabbitMQ node (or cluster) to play with",
        description="A private RabbitMQ node (or a cluster of three) that every mqlab\n"
        "program uses while AMQP_URL is unset.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=BROKER_EXAMPLES,
    )
    actions = b.add_subparsers(dest="action", required=True, metavar="ACTION")
    up = actions.add_parser(
        "up",
        help="start a private node (or --cluster) and keep it until Ctrl+C or 'broker down'",
        description="Start a private RabbitMQ node on loopback ports of its own, with its own "
        "administrator and a random password, and keep it until Ctrl+C, SIGTERM or "
        "'mqlab broker down'.",
    )
    up.add_argument("--detach", action="store_true", help="run in the background")
    up.add_argument(
        "--cluster",
        action="store_true",
        help="three clustered nodes (for MQLAB_QUEUE_TYPE=quorum and node loss)",
    )
    actions.add_parser("down", help="stop the node or cluster 'broker up' started")
    actions.add_parser(
        "status", help="each node's pid and state, which node leads each queue, queue counts"
    )
    env = actions.add_parser(
        "env",
        help="print 'export AMQP_URL=...' and the management UI's address and login",
        description="Print the shell lines that point a program at the 'broker up' node, and "
        "the management UI's address and login. Set them with: "
        'eval "$(mqlab broker env --show-password)"',
    )
    env.add_argument(
        "--show-password",
        action="store_true",
        help="print the password (masked otherwise); also the management UI's login",
    )
    purge = actions.add_parser(
        "purge", help="remove the ready messages of the implementations' queues"
    )
    purge.add_argument("--impl", action="append", help="implementation(s) (default: all)")
    purge.add_argument(
        "--amqp-url",
        help="this broker, or several nodes' URIs joined by ';' (default AMQP_URL, else the "
        "'broker up' node)",
    )
    kill = actions.add_parser(
        "kill", help="SIGKILL one node of the cluster (a crash); its data stays"
    )
    kill.add_argument("node", help="its number (2) or its name as 'broker status' shows it")
    start = actions.add_parser(
        "start", help="start a killed node of the cluster again; it rejoins with its data"
    )
    start.add_argument("node", help="its number (2) or its name as 'broker status' shows it")
    b.set_defaults(func=cmd_broker)

    w = sub.add_parser("worker", help="run one worker of an implementation in the foreground")
    w.add_argument("--impl", required=True, help=", ".join(registry.KNOWN))
    w.add_argument("--name", default=f"worker-{os.getpid()}")
    w.add_argument(
        "--concurrency", type=int, default=1, help="worker slots: tasks run at the same time"
    )
    w.add_argument("--prefetch", type=int, default=1, help="per slot; 0 = unlimited")
    w.add_argument("--slowdown", type=float, default=1.0)
    w.add_argument("--journal", help="SQLite journal file to record executions in")
    w.add_argument("--amqp-url")
    w.set_defaults(func=cmd_worker)

    s = sub.add_parser("send", help="publish work messages through an implementation")
    s.add_argument("--impl", required=True, help=", ".join(registry.KNOWN))
    s.add_argument("body", nargs="*", help="message text (dots = seconds of work)")
    s.add_argument("--count", type=int, default=1)
    s.add_argument("--amqp-url")
    s.set_defaults(func=cmd_send)
    return p


def main() -> None:
    """Console-script entry point (``mqlab``)."""
    args = parser().parse_args()
    shared_cli.run(lambda: int(args.func(args)))


if __name__ == "__main__":
    main()
