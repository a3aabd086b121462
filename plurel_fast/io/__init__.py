"""Sinks: Parquet in RelBench layout."""
