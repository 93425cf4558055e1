"""Countertop terminal firmware: pure transaction core plus the asyncio shell around it."""
