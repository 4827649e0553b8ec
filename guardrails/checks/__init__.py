"""On-demand pre-flight checks (``POST /api/checks/...``, ``python -m guardrails check ...``).

    policies.py        value types of the policy kinds ``job``, ``model-registry``, ``check-access``
    policy_schema.py   their JSON Schemas and semantic pass (the loader's three passes dispatch here)
    principal.py       App Service authentication's ``X-MS-CLIENT-PRINCIPAL``, decoded and validated
    job.py             pure: job policy + request + identity -> broken conditions
    access.py          pure: who may check on another identity's behalf, who may remediate
    models.py          pydantic request/response models (validation and the OpenAPI document)
    openapi.py         the OpenAPI 3.1 document built from those models
    service.py         the use cases: decide, audit (one row per answer), answer
    api.py             framework-free HTTP handling (body cap, JSON, errors); the blueprint adapts it

Kept light: importing the package imports nothing (the policy loader reaches in here).
"""
