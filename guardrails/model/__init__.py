"""Pure value types: ARM ids, events, resources, policies, decisions. No I/O here."""
