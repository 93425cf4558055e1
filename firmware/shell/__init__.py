"""The imperative shell: the event loop that runs the flow against devices, hosts and the clock, the CLI, logging and the watchdog."""
