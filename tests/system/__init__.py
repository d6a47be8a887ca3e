"""The service as processes: CLI, launcher, shutdown, faults, stress, fuzzing."""
