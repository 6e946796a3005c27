"""halb lab: the seeds' cluster in network namespaces (topology, load driver, scenarios, report)
and `halb backend`, the demo backend it runs."""
