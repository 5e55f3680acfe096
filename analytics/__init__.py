"""ratewarden analytics: the ClickHouse schema and its migrations (queries and the admin API follow)."""
