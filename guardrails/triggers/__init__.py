"""guardrails.triggers"""
