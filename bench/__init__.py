"""portraitcolor's benchmarks (not tests): throughput and memory figures, each beside the
ceiling that the same machine reaches in the same run. Run `python -m bench --help`."""
