"""guardrails.local"""
