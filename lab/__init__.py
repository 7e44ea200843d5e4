"""The comparison lab: ``mqlab compare`` measures every implementation side by side.

Three parts: the commands (:mod:`lab.cli`, :mod:`lab.commands`), the running
(:mod:`lab.run`) and the reporting (:mod:`lab.report`); between them the scenario contract
(:mod:`lab.scenario`) and one module per scenario (:mod:`lab.scenarios`). Every figure comes
from this run: the execution journal (:mod:`shared.journal`) the workers write, the broker's
management API (:mod:`testbed.management`), the queue itself (:mod:`lab.run.drain`), and
wall-clock timing of the implementation's own producer.
"""
