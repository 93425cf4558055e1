"""The pure core: flow, EMV kernel, tracks, money, items, receipt and report layout; data in, data out.

No device, socket, database, thread or clock here (tests/test_layers.py checks it)."""
