"""Device adapters: each turns one library's device I/O into typed terminal events or takes commands."""
