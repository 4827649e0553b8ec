"""guardrails.adapters"""
