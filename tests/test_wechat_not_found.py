"""A signed WeChat error answer names no order: two of them must not end a scanned code's order as 'closed'
(PAYMENT CANCELLED); the client says "not found" and the desk decides when that is final (test_walletorder)."""

from __future__ import annotations

import asyncio
import json

from test_wechat_fuzz import ORDER, canned


def test_cancel_does_not_believe_not_found_answers_that_name_no_order():
    client = canned()
    client.status = 404
    client.body = json.dumps({"code": "ORDER_NOT_EXIST", "message": "x"})
    result = asyncio.run(client.cancel(ORDER))
    # Were it "closed", a paid code payment whose query and reverse answers a proxy replaced with signed
    # not-found answers taken from other requests would be journaled cancelled: paid, and told NOT PAID.
    assert result.state == "not_found", result
