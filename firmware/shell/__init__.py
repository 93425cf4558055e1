"""The imperative shell: the loop that runs the flow against devices, hosts and the clock; CLI, logs, watchdog."""
