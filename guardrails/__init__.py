"""guardrails: event-driven security guardrails for ML platforms on Azure.

Layers depend inward only (see README "Architecture"):
model/ and policy/ are pure; remediation/ plans purely and applies through ports;
adapters/ are the only modules importing Azure service SDKs; triggers/ the only
ones importing azure.functions.
"""

__version__ = "0.1.0"
