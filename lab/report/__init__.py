"""The lab's reporting part: from :class:`lab.run.runner.Results` to report.md, the decision
table, the charts and the consistency checks, each scenario contributing what it declares
(:class:`lab.scenario.Scenario`). Nothing here names a scenario."""
