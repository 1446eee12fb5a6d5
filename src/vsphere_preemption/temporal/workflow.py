"""PreemptVMsWorkflow (not built yet)."""
