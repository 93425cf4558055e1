"""Security: DUKPT, PIN blocks, keys and the sealed key store, card-data hygiene, operators, signed updates."""
