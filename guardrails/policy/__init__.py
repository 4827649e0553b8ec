"""guardrails.policy"""
