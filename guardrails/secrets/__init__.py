"""The secret guardrail: Key Vault events, secret references, rotation strategies."""
