"""Wallets: the Alipay client, the wallet desk that runs wallet orders to an end, and EMVCo merchant QR payloads."""
