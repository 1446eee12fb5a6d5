"""The vSphere adapter: the only code that imports pyVmomi or speaks the tagging REST API.

`client.VSphereClient` is its face (find, power off, annotate); `config.VCenterConfig`
says where vCenter is and how to trust it; `inventory` prepares a simulator's
inventory for tests, the demo and benchmarks. Everything returns domain types.
Import the submodules directly: pyVmomi is heavy and only the worker needs it.
"""
