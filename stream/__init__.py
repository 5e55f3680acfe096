"""ratewarden stream processing: per-client usage windows and abuse detectors
(the Faust worker, alerting, penalties and the ClickHouse sink build on these)."""
