"""Records: the SQLite journal of every transaction and the counters that must never go backwards."""
