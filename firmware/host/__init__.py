"""The acquirer link: ISO 8583 messages and dialects (pure), the TCP link, sign-on, the outbox of retries."""
