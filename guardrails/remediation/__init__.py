"""guardrails.remediation"""
