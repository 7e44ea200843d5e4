"""The lab's running part: plan the runs, give each scenario a :class:`lab.run.harness.Lab`
(journals, workers, publishing, clean queues) on the run's broker, time drains, collect every
sample into :class:`lab.run.runner.Results`. Nothing here names a scenario."""
