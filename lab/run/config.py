"""The settings of one ``mqlab compare`` run: the lab's own and each scenario's parameters.

A scenario's parameters (names, full and ``--quick`` values) are declared by the scenario
(:attr:`lab.scenario.Scenario.params`); this module only gathers them, with the ``--set``
overrides on top, so no scenario's settings are spelled out here.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from lab.scenario import ParamValue, Scenario


@dataclass(frozen=True)
class Config:
    """The settings of one ``mqlab compare`` run (times in seconds).

    Attributes:
        quick: the small-N preset (``--quick``).
        repeat: how many times each scenario runs per row (``--repeat``).
        queue_types: the queue types each scenario runs on (``--queue-type``).
        topologies: ``single`` (one node) and/or ``cluster`` (``--topology``).
        variants: the extra rows measured (:mod:`lab.run.targets`).
        drain_timeout: deadline for draining any queue.
        params: scenario name -> its parameters (:meth:`lab.scenario.Scenario.defaults`,
            then the ``--set`` overrides).
        seed: seeds the shuffled order of the rows within each repeat
            (:func:`lab.run.runner.plan`); random unless given.
    """

    quick: bool = False
    repeat: int = 1
    queue_types: tuple[str, ...] = ("classic",)
    topologies: tuple[str, ...] = ("single",)
    variants: tuple[str, ...] = ("defaults", "threads")
    drain_timeout: float = 180.0
    params: dict[str, dict[str, ParamValue]] = field(default_factory=dict)
    seed: int = field(default_factory=lambda: random.randrange(2**31))

    @staticmethod
    def preset(
        quick: bool,
        scenarios: Iterable[Scenario],
        repeat: int = 1,
        sets: dict[str, dict[str, ParamValue]] | None = None,
        **overrides: Any,
    ) -> Config:
        """The default settings, or the ``--quick`` ones (each scenario's quick parameters, a
        shorter drain deadline), with ``sets`` (scenario -> parameter -> value) and ``overrides``
        (the lab's own fields) on top."""
        params = {s.name: {**s.defaults(quick), **(sets or {}).get(s.name, {})} for s in scenarios}
        lab: dict[str, Any] = {"drain_timeout": 60.0} if quick else {}
        return Config(quick=quick, repeat=repeat, params=params, **{**lab, **overrides})

    def of(self, scenario: str) -> dict[str, Any]:
        """The parameters of ``scenario`` (empty if it has none)."""
        return dict(self.params.get(scenario, {}))

    def as_dict(self) -> dict[str, Any]:
        """The settings as plain JSON-able values."""

        def plain(v: Any) -> Any:
            if isinstance(v, tuple):
                return list(v)
            if isinstance(v, dict):
                return {k: plain(x) for k, x in v.items()}
            return v

        return {k: plain(v) for k, v in self.__dict__.items()}

    def setups(self) -> list[str]:
        """``queue type/topology`` pairs, in run order (``classic/single`` first)."""
        return [f"{q}/{t}" for t in self.topologies for q in self.queue_types]
