"""Desktop latency/accuracy benchmarks and reports (issue 7)."""
