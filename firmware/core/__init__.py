"""The pure core: the transaction flow, EMV kernel pieces, track parsing, money, items, receipt and report layout (data in, data out; no device, socket, database, thread or clock)."""
