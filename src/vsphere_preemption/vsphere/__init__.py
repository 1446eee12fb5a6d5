"""The vSphere adapter: the only code that imports pyVmomi or speaks the tagging REST API.

`client.VSphereClient` is its face (find, power off, annotate); `config.VCenterConfig`
says where vCenter is and how to trust it; `preflight` reads what `preemptctl check` asks.
(A simulator's inventory for tests, the demo and benchmarks is prepared by
`devtools/inventory.py`, through the client.) Everything returns domain types.
Import the submodules directly: pyVmomi is heavy and only the worker needs it.
"""
