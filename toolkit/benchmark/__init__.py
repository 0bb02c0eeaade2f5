"""The benchmark protocol: timing in a child process, statistics, the result record and the environment."""
