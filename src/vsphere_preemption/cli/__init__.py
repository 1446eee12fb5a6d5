"""preemptctl: the one console script with a subcommand per program."""
