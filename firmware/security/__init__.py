"""Security: DUKPT, PIN blocks, key handling and the sealed key store, card-data hygiene, operators and signed updates."""
