"""greenroom's agent execution core, built on the `runtime` actor kernel."""
