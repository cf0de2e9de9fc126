"""The engine: DSL, stage graph, queues, executors, stats and configuration.

Nothing in here imports the runner, the adapters or the CLI.
"""
