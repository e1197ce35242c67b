"""Profiling for ``edgesr bench``: timing, FLOPs and GEMM peak, system info, the report.

``runner.run_bench`` produces a report dict (schema in ``report``, documented in
docs/bench-schema.md), each case in a child process of its own (``isolation``); ``render``
shows it as a table and a PNG plot.
"""
